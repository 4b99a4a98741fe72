/**
 * diagnostics_channel channels (undici habit): publishing is guarded by `hasSubscribers`,
 * so an unobserved channel costs one property read.
 *
 * I/O thread:  'ringwire:drop'    { reason, handle }      something was refused or dropped (also counted in stats)
 *              'ringwire:worker'  { slot, event, error? } a worker died ('died'; error: a WorkerDiedError, the
 *                                                     cause in error.cause) or was started ('started')
 * Workers:     'ringwire:hook'    { stage, path, handle, error } a hook or handler failed (subscribe from a
 *                                                         module or hooks file: channels are per thread)
 */
import diagnostics from 'node:diagnostics_channel';

export const dropChannel = diagnostics.channel('ringwire:drop');
export const workerChannel = diagnostics.channel('ringwire:worker');
export const hookChannel = diagnostics.channel('ringwire:hook');
