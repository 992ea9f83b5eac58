/**
 * `@bkt/worker-runc/runc-executor`: the container executor, which runs a
 * container without a solver (`RuncExecutor` behind the `Executor`
 * interface). An entry of its own so that importing the plugin
 * (`@bkt/worker-runc`) does not load runc's code: the plugin loads it on a
 * build's first exec step, container or cache mount.
 */
export { RuncExecutor, type RuncExecutorOptions } from './runc.js';
export type * from './executor.js';
