/**
 * @bkt/server: BuildKit's Control API over bkt's solver, and the `bktd`
 * daemon. See README.md.
 */
export { startDaemon, type Daemon, type DaemonOptions } from './daemon.js';
export { bktdMain, DEFAULT_ROOT, type MainIo } from './main.js';
export { defineDaemonConfig, loadDaemonConfig, findDaemonConfig, type DaemonConfig } from './config.js';
export { controlService, type ControlBackend } from './control.js';
export { BuildTracker } from './builds.js';
export { addService, statusOf, type CallContext, type ServiceImplementation } from './rpc.js';
export type { GCPolicyConfig } from './gc.js';
export { daemonPreset } from './preset.js';
export { DEFAULT_ADDRESS } from './listen.js';
