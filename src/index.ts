/**
 * ringwire, the I/O-thread side: `createServer`, options, stats, errors, wire codecs, the fd allocator.
 * Module and hooks files (worker side) import from `ringwire/module` instead.
 *
 * @module ringwire
 */
// Package entry (I/O-thread side). Explicit named exports; types exported separately.
// Module files (worker side) import from 'ringwire/module' instead.
export { createServer, Server } from './core/server.js';
export type { ServerOptions, ResolvedOptions, LifecycleHooks, CodecName, ClusterOptions } from './core/options.js';
export type { ServerStats, WorkerStats, DropStats, ConnectionInfo } from './core/stats.js';
export type { ModuleDescriptor } from './shared/tasks.js';
export { FdAllocator, FD_MAX } from './fd/index.js';
export type {
  Connector, ConnectorClient, ClientManager, ClientSession, ClientRequest, AddClientResult, RouteTable,
} from './core/connector.js';
export { SendStatus } from './core/connector.js';
export {
  TcpConnector, TcpClient, TcpFrameDecoder, TcpFrameType, TcpErrorCodes, encodeTcpFrame,
} from './core/connectors/tcp.js';
export type { TcpConnectorOptions, TcpFrame, TcpFrameError, TcpHandshakeReply } from './core/connectors/tcp.js';
export { MemoryConnector, MemoryClient, MemoryConnectError } from './core/connectors/memory.js';
export type { MemoryMessage, MemoryClose, MemoryConnectorOptions } from './core/connectors/memory.js';
export type { FdAllocatorOptions } from './fd/index.js';
export {
  ErrorCodes, RingwireError, UwsFallbackError, BadFrameError, BadRecordError, UnknownEventError,
  HandlerError, HandlerTimeoutError, RateLimitedError, ModuleLoadError, ListenError, ServerStateError, WorkerDiedError, RecordTooLargeError, ClientClosedError,
} from './shared/errors.js';
export type { ErrorCode } from './shared/errors.js';
export { CloseCode } from './shared/constants.js';
export { loadUws, SUPPORTED_NODE_MAJORS } from './core/uws.js';
export { encodeFrame, decodeFrame, binaryCodec, jsonCodec, rawCodec } from './shared/wire.js';
export type { Codec, DecodedFrame } from './shared/wire.js';
export { defineModule, defineHooks } from './workers/define.js';
export type {
  Context, UpgradeContext, ModuleDefinition, HooksDefinition, EventDefinition, ModuleSocketOptions, Stage,
  SendOptions, UpgradeHook, ConnectHook, MessageHook, DisconnectHook, ErrorHook, MaybePromise,
  AwayHook, ResumeHook, SubscribeHook, DrainHook, PresenceMember, ResumeInfo, ConnectionRecord, RoomSummary,
  PageOptions, RoomListPage, MemberPage,
} from './workers/define.js';
