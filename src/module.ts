/**
 * ringwire/module, the worker side: what module and hooks files import. It pulls in nothing
 * from the I/O thread (no uWebSockets.js, no piscina).
 *
 * @module ringwire/module
 */
// Worker-side entry ('ringwire/module'): what module and hooks files import.
// It pulls in nothing from the I/O thread (no uWebSockets.js, no piscina).
export { defineModule, defineHooks } from './workers/define.js';
export type {
  Context, UpgradeContext, ModuleDefinition, HooksDefinition, EventDefinition, ModuleSocketOptions,
  Stage, SendOptions, CodecName, UpgradeHook, ConnectHook, MessageHook, DisconnectHook, ErrorHook, MaybePromise,
  AwayHook, ResumeHook, SubscribeHook, DrainHook, PresenceMember, ResumeInfo, ConnectionRecord, RoomSummary,
  PageOptions, RoomListPage, MemberPage,
} from './workers/define.js';
export { encodeFrame, decodeFrame } from './shared/wire.js';
export { CloseCode } from './shared/constants.js';
