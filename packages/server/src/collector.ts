/**
 * Runs the daemon's GC policies (gc.ts): at start, every `intervalMs`, and
 * after builds once none is running (a prune waits for running builds and
 * holds new ones back, so it is not run while builds are busy). After
 * builds it runs `afterBuildDelayMs` after the last one ended — off the path
 * of the build's answer, and once for builds that follow each other closely
 * (BuildKit throttles its after-build GC too). Runs never overlap; a request
 * during a run makes one more run afterwards. A run measures the store once,
 * and again only after a policy removed something.
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
  /** How long after the last build ends its GC run starts (default 1 s). */
  afterBuildDelayMs?: number;
}

const AFTER_BUILD_DELAY_MS = 1_000;

export class Collector {
  readonly #opts: CollectorOptions;
  #timer: NodeJS.Timeout | undefined;
  #afterBuild: NodeJS.Timeout | undefined;
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

  /** After a build: a run `afterBuildDelayMs` after the last build ended, if none is running then. */
  afterBuild(): void {
    if (this.#stopped) return;
    clearTimeout(this.#afterBuild);
    this.#afterBuild = setTimeout(() => {
      this.#afterBuild = undefined;
      if (!this.#opts.busy()) this.request();
    }, this.#opts.afterBuildDelayMs ?? AFTER_BUILD_DELAY_MS);
    this.#afterBuild.unref();
  }

  /** Waits for the current run; no more runs start. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearTimeout(this.#afterBuild);
    await this.#running;
  }

  async #run(): Promise<void> {
    const { solver, root, policies, log } = this.#opts;
    try {
      // What the store holds and the disk's space, measured again only after a policy removed something.
      let measured: { used: number; disk: Awaited<ReturnType<typeof diskStat>> } | undefined;
      for (const [i, p] of policies.entries()) {
        if (this.#stopped) return;
        measured ??= { used: usedBytes(await solver.diskUsage()), disk: await diskStat(root) };
        const prune = policyPrune(p, measured.used, measured.disk);
        if (!prune) continue;
        const removed = await solver.prune(prune);
        if (removed.length > 0) {
          measured = undefined;
          log(`gc: policy ${i} removed ${removed.length} records, ${usedBytes(removed)} bytes`);
        }
      }
    } catch (err) {
      log(`gc: ${(err as Error).message}`);
    }
  }
}
