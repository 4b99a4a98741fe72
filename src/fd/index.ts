// fd allocator (pure logic, I/O thread only). See allocator.ts for semantics and memory layout.
export { FdAllocator, FD_MAX } from './allocator.js';
export type { FdAllocatorOptions } from './allocator.js';
