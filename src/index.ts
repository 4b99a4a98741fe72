// Package entry (I/O-thread side). Explicit named exports; types exported separately.
export { FdAllocator, FD_MAX } from './fd/index.js';
export type { FdAllocatorOptions } from './fd/index.js';
export {
  ErrorCodes, RingwireError, UwsFallbackError, BadFrameError, BadRecordError, UnknownEventError,
  HandlerError, ModuleLoadError, ListenError, ServerStateError, WorkerDiedError, RecordTooLargeError,
} from './shared/errors.js';
export type { ErrorCode } from './shared/errors.js';
export { loadUws, SUPPORTED_NODE_MAJORS } from './core/uws.js';
