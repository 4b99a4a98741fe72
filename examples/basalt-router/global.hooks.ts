// GLOBAL_ hooks of the Basalt-style router: run for every event, before the event's own.
import { basaltGlobalHooks } from './basalt/event.js';

export default basaltGlobalHooks({
  onUpgradeHook() {
    // Every connection gets a connection time in its userData (the event's hook may add more).
    return { connectedAt: Date.now() };
  },
  onConnectHook() {},
  onReceivedHook(_ws, message) {
    // Cheap global guard: refuse empty messages before any event code runs.
    if (message.length === 0) return false;
    return undefined;
  },
  onDisconnectHook() {},
});
