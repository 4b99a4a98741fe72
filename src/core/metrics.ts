/**
 * Prometheus text exposition (format 0.0.4) of `stats()`, served on the server's own uWS app
 * when `options.metricsPath` is set. Built on demand from the counters; nothing on the hot path.
 */
import type { ServerStats } from './stats.js';

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

class Writer {
  private out = '';
  family(name: string, type: 'gauge' | 'counter', help: string): this {
    this.out += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
    return this;
  }
  sample(name: string, value: number, labels?: Record<string, string | number>): this {
    let l = '';
    if (labels !== undefined) {
      l = '{' + Object.entries(labels).map(([k, v]) => `${k}="${esc(String(v))}"`).join(',') + '}';
    }
    this.out += `${name}${l} ${Number.isFinite(value) ? value : 0}\n`;
    return this;
  }
  toString(): string {
    return this.out;
  }
}

export function prometheusText(s: ServerStats): string {
  const w = new Writer();
  w.family('ringwire_connections', 'gauge', 'Open connections (WebSocket and connector clients).').sample('ringwire_connections', s.connections);
  w.family('ringwire_live_fds', 'gauge', 'fds allocated (connections plus upgrades in progress).').sample('ringwire_live_fds', s.liveFds);
  w.family('ringwire_orphaned_upgrades', 'gauge', 'Upgrades whose client left while their hooks still run (count against maxConnections).').sample('ringwire_orphaned_upgrades', s.orphanedUpgrades);
  w.family('ringwire_upgrades_total', 'counter', 'Upgrades accepted, and upgrades rejected by an upgrade hook (refusals decided by the server are in ringwire_drops_total by reason).')
    .sample('ringwire_upgrades_total', s.upgradesAccepted, { outcome: 'accepted' })
    .sample('ringwire_upgrades_total', s.upgradesRejected, { outcome: 'rejected' });
  w.family('ringwire_messages_in_total', 'counter', 'Messages received from clients.').sample('ringwire_messages_in_total', s.messagesIn);
  w.family('ringwire_messages_out_total', 'counter', 'Messages sent to clients (sends, not publishes).').sample('ringwire_messages_out_total', s.messagesOut);
  w.family('ringwire_publishes_total', 'counter', 'Publish commands executed.').sample('ringwire_publishes_total', s.publishes);
  w.family('ringwire_drops_total', 'counter', 'Things refused or dropped, by reason (nothing is dropped silently).');
  for (const [reason, n] of Object.entries(s.drops)) w.sample('ringwire_drops_total', n, { reason });
  w.family('ringwire_worker_restarts_total', 'counter', 'Workers that died and were replaced.').sample('ringwire_worker_restarts_total', s.workerRestarts);
  w.family('ringwire_worker_alive', 'gauge', 'Whether the worker slot has a live worker.');
  for (const x of s.workers) w.sample('ringwire_worker_alive', x.alive ? 1 : 0, { slot: x.slot });
  w.family('ringwire_worker_connections', 'gauge', 'Connections owned by each worker.');
  for (const x of s.workers) w.sample('ringwire_worker_connections', x.connections, { slot: x.slot });
  w.family('ringwire_ring_capacity_bytes', 'gauge', 'Capacity of each ring.');
  for (const x of s.workers) w.sample('ringwire_ring_capacity_bytes', x.ringCapacity, { slot: x.slot });
  w.family('ringwire_ring_used_bytes', 'gauge', 'Bytes in use in each ring (occupancy).');
  for (const x of s.workers) {
    w.sample('ringwire_ring_used_bytes', x.inboundUsed, { slot: x.slot, ring: 'inbound' })
      .sample('ringwire_ring_used_bytes', x.outboundUsed, { slot: x.slot, ring: 'outbound' })
      .sample('ringwire_ring_used_bytes', x.overflowUsed, { slot: x.slot, ring: 'overflow' });
  }
  w.family('ringwire_worker_messages_total', 'counter', 'Messages handled by each worker.');
  for (const x of s.workers) w.sample('ringwire_worker_messages_total', x.messages, { slot: x.slot });
  w.family('ringwire_worker_errors_total', 'counter', 'Errors in workers, by kind.');
  for (const x of s.workers) {
    w.sample('ringwire_worker_errors_total', x.handlerErrors, { slot: x.slot, kind: 'handler' })
      .sample('ringwire_worker_errors_total', x.hookErrors, { slot: x.slot, kind: 'hook' })
      .sample('ringwire_worker_errors_total', x.badFrames, { slot: x.slot, kind: 'bad_frame' })
      .sample('ringwire_worker_errors_total', x.unknownEvents, { slot: x.slot, kind: 'unknown_event' })
      .sample('ringwire_worker_errors_total', x.asyncTimeouts, { slot: x.slot, kind: 'async_timeout' })
      .sample('ringwire_worker_errors_total', x.unhandledRejections, { slot: x.slot, kind: 'unhandled_rejection' })
      .sample('ringwire_worker_errors_total', x.duplicateReplies, { slot: x.slot, kind: 'duplicate_reply' })
      .sample('ringwire_worker_errors_total', x.strayReplies, { slot: x.slot, kind: 'stray_reply' });
  }
  w.family('ringwire_resumes_total', 'counter', 'Sessions resumed on a new socket.').sample('ringwire_resumes_total', s.resumes);
  w.family('ringwire_detached', 'gauge', 'Connections whose socket dropped, waiting for a resume.').sample('ringwire_detached', s.detached);
  w.family('ringwire_worker_backoffs_total', 'counter', 'Worker restarts delayed by the crash-loop back-off.').sample('ringwire_worker_backoffs_total', s.workerBackoffs);
  w.family('ringwire_connector_errors_total', 'counter', 'Transport errors reported by connectors, by code.');
  for (const [code, n] of Object.entries(s.connectorErrors)) w.sample('ringwire_connector_errors_total', n, { code });
  if (s.cluster !== null) {
    const c = s.cluster;
    w.family('ringwire_cluster_connected', 'gauge', 'Whether the cluster bus is connected to Redis.').sample('ringwire_cluster_connected', c.connected ? 1 : 0, { node: c.nodeId });
    w.family('ringwire_cluster_messages_total', 'counter', 'Cluster bus messages, by direction.')
      .sample('ringwire_cluster_messages_total', c.published, { node: c.nodeId, direction: 'published' })
      .sample('ringwire_cluster_messages_total', c.received, { node: c.nodeId, direction: 'received' })
      .sample('ringwire_cluster_messages_total', c.dropped, { node: c.nodeId, direction: 'dropped' });
    w.family('ringwire_cluster_reconnects_total', 'counter', 'Cluster bus reconnections.').sample('ringwire_cluster_reconnects_total', c.reconnects, { node: c.nodeId });
    w.family('ringwire_cluster_presence_retries_total', 'counter', 'Retried first reads of a room\'s members on the other nodes.')
      .sample('ringwire_cluster_presence_retries_total', c.presenceRetries, { node: c.nodeId });
  }
  w.family('ringwire_worker_restart_backoff_ms', 'gauge', 'ms a pending worker restart still waits out (0: none pending).');
  for (const x of s.workers) w.sample('ringwire_worker_restart_backoff_ms', x.restartBackoffMs, { slot: x.slot });
  w.family('ringwire_worker_overflowed_total', 'counter', 'Records that went through the overflow because the ring was full.');
  for (const x of s.workers) w.sample('ringwire_worker_overflowed_total', x.overflowed, { slot: x.slot });
  w.family('ringwire_worker_outbound_full_waits_total', 'counter', 'Times a worker waited for room in its outbound ring.');
  for (const x of s.workers) w.sample('ringwire_worker_outbound_full_waits_total', x.outboundFullWaits, { slot: x.slot });
  w.family('ringwire_worker_discarded_total', 'counter', 'Messages that reached a worker after their connection started closing (not handled).');
  for (const x of s.workers) w.sample('ringwire_worker_discarded_total', x.discarded, { slot: x.slot });
  return w.toString();
}
