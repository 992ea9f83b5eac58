/**
 * Runs the daemon's GC policies (gc.ts): at start, every `intervalMs`, and
 * after builds once none is running (a prune waits for running builds and
 * holds new ones back, so it is not run while builds are busy). Runs never
 * overlap; a request during a run makes one more run afterwards.
 */
import type { Solver } from '@bkt/solver';
import { diskStat, policyPrune, usedBytes, type GCPolicy } from './gc.js';

export interface CollectorOptions {
  solver: Solver;
  root: string;
  policies: GCPolicy[];
  intervalMs: number;
  /** Whether builds are running now. */
  busy(): boolean;
  log(line: string): void;
}

export class Collector {
  readonly #opts: CollectorOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  constructor(opts: CollectorOptions) {
    this.#opts = opts;
  }

  start(): void {
    this.#timer = setInterval(() => this.request(), this.#opts.intervalMs);
    this.#timer.unref();
    this.request();
  }

  /** Asks for a GC run (now, or after the current one). */
  request(): void {
    if (this.#stopped || this.#opts.policies.length === 0) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#run().finally(() => {
      this.#running = undefined;
      if (this.#again && !this.#stopped) {
        this.#again = false;
        this.request();
      }
    });
  }

  /** After a build: a run once no build is running. */
  afterBuild(): void {
    if (!this.#opts.busy()) this.request();
  }

  /** Waits for the current run; no more runs start. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#running;
  }

  async #run(): Promise<void> {
    const { solver, root, policies, log } = this.#opts;
    try {
      for (const [i, p] of policies.entries()) {
        if (this.#stopped) return;
        const used = usedBytes(await solver.diskUsage());
        const prune = policyPrune(p, used, await diskStat(root));
        if (!prune) continue;
        const removed = await solver.prune(prune);
        if (removed.length > 0) log(`gc: policy ${i} removed ${removed.length} records, ${usedBytes(removed)} bytes`);
      }
    } catch (err) {
      log(`gc: ${(err as Error).message}`);
    }
  }
}
