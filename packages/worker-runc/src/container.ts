/**
 * Interactive containers (core's `ContainerProvider`): a container over
 * prepared mounts whose processes a client starts, feeds, resizes and
 * signals. As BuildKit's gateway containers, the first process is the
 * container's init (`runc run`), the others `runc exec` beside it; when the
 * init exits the container is gone. `release()` kills everything, waits for
 * the processes, then gives the mounts back (unmounted, writable trees
 * thrown away).
 */
import { randomBytes } from 'node:crypto';
import {
  BktError,
  signalNumber,
  type BuildContext,
  type ContainerProcess,
  type ContainerProcessIO,
  type ContainerProcessSpec,
  type InteractiveContainer,
  type NewContainerRequest,
} from '@bkt/core';
import * as pb from '@bkt/api/pb';
import type { ContainerSpec, Executor, NetworkMode, ProcessControl } from './executor.js';
import type { PreparedMounts } from './mounts.js';

export const ENTITLEMENT_NETWORK_HOST = 'network.host';
export const ENTITLEMENT_SECURITY_INSECURE = 'security.insecure';

let counter = 0;

/** A container id of this process (`bkt-<pid>-…`, what the watchdog and the sweep recognise). */
export function containerId(kind: string): string {
  return `bkt-${process.pid}-${kind}${(++counter).toString(36)}-${randomBytes(4).toString('hex')}`;
}

export interface RuncContainerOptions {
  id: string;
  executor: Executor;
  prepared: PreparedMounts;
  network: NetworkMode;
  hostname?: string;
  extraHosts: { host: string; ip: string }[];
  entitlements: ReadonlySet<string>;
}

interface Running {
  id: string;
  done: Promise<number>;
  control: Promise<ProcessControl>;
  abort: AbortController;
}

export class RuncInteractiveContainer implements InteractiveContainer {
  readonly id: string;
  readonly #opts: RuncContainerOptions;
  readonly #processes = new Map<string, Running>();
  #init: Running | undefined;
  #initExited = false;
  #released: Promise<void> | undefined;
  /** Run once on release (e.g. stop listening to the build's signal). */
  readonly #onRelease: (() => void)[] = [];
  #n = 0;

  constructor(opts: RuncContainerOptions) {
    this.id = opts.id;
    this.#opts = opts;
  }

  processes(): string[] {
    return [...this.#processes.keys()];
  }

  async start(proc: ContainerProcessSpec, io: ContainerProcessIO = {}): Promise<ContainerProcess> {
    if (this.#released) throw new BktError('NOT_FOUND', `container ${this.id} has been released`, { container: this.id });
    if (!Array.isArray(proc.args) || proc.args.length === 0) {
      throw new BktError('INVALID_ARGUMENT', `container ${this.id}: a process needs args`, { attribute: 'args' });
    }
    if (proc.security === 'insecure' && !this.#opts.entitlements.has(ENTITLEMENT_SECURITY_INSECURE)) {
      throw new BktError(
        'PERMISSION_DENIED',
        `security mode "insecure" needs the ${ENTITLEMENT_SECURITY_INSECURE} entitlement, which this build was not granted (--allow ${ENTITLEMENT_SECURITY_INSECURE})`,
        { attribute: 'security', entitlement: ENTITLEMENT_SECURITY_INSECURE },
      );
    }
    const processId = `${++this.#n}`;
    const abort = new AbortController();
    let setControl!: (c: ProcessControl) => void;
    const control = new Promise<ProcessControl>((resolve) => (setControl = resolve));
    const processSpec = {
      args: proc.args,
      env: proc.env ?? [],
      cwd: proc.cwd || '/',
      user: proc.user ?? '',
      tty: proc.tty ?? false,
      ...(proc.size ? { size: proc.size } : {}),
    };
    const ioOf = {
      ...(io.stdin ? { stdin: io.stdin } : {}),
      stdout: (d: Uint8Array) => io.stdout?.(d),
      stderr: (d: Uint8Array) => io.stderr?.(d),
      signal: abort.signal,
      onControl: setControl,
    };
    let done: Promise<number>;
    if (!this.#init) {
      if (this.#initExited) throw this.#gone();
      const spec: ContainerSpec = {
        id: this.id,
        rootfs: this.#opts.prepared.rootfs,
        readonlyRootfs: this.#opts.prepared.readonlyRootfs,
        mounts: this.#opts.prepared.mounts,
        process: processSpec,
        ...(this.#opts.hostname ? { hostname: this.#opts.hostname } : {}),
        extraHosts: this.#opts.extraHosts,
        network: this.#opts.network,
        security: proc.security ?? 'sandbox',
        sensitive: this.#opts.prepared.sensitive,
      };
      done = this.#opts.executor.run(spec, ioOf);
      const running: Running = { id: processId, done, control, abort };
      this.#init = running;
      done.then(
        () => (this.#initExited = true),
        () => (this.#initExited = true),
      );
      this.#track(running);
      // The process has started once runc shows the container running (or it already ended).
      await this.#waitRunning(done);
    } else {
      if (this.#initExited) throw this.#gone();
      done = this.#opts.executor.exec(this.id, { ...processSpec, ...(proc.security ? { security: proc.security } : {}) }, ioOf);
      this.#track({ id: processId, done, control, abort });
    }
    const signalOf = abort.signal;
    return {
      id: processId,
      wait: () => done,
      resize: async (size) => {
        if (!processSpec.tty) throw new BktError('INVALID_ARGUMENT', `process ${processId} of container ${this.id} has no terminal`, { attribute: 'tty' });
        if (signalOf.aborted) throw this.#gone();
        await (await control).resize(size);
      },
      signal: async (sig) => {
        const n = signalNumber(sig);
        if (signalOf.aborted || !this.#processes.has(processId)) {
          throw new BktError('NOT_FOUND', `process ${processId} of container ${this.id} is not running`, { container: this.id });
        }
        await (await control).signal(n);
      },
    };
  }

  /** Runs `fn` once when the container is released. */
  onRelease(fn: () => void): void {
    if (this.#released) fn();
    else this.#onRelease.push(fn);
  }

  release(): Promise<void> {
    this.#released ??= (async () => {
      for (const fn of this.#onRelease.splice(0)) fn();
      const all = [...this.#processes.values()];
      // Exec'd processes first, then the init (its end removes the container).
      for (const p of all) if (p !== this.#init) p.abort.abort();
      this.#init?.abort.abort();
      await Promise.allSettled(all.map((p) => p.done));
      await this.#opts.prepared.release();
    })();
    return this.#released;
  }

  #track(p: Running): void {
    this.#processes.set(p.id, p);
    const forget = () => this.#processes.delete(p.id);
    p.done.then(forget, forget);
  }

  #gone(): BktError {
    return new BktError('NOT_FOUND', `container ${this.id} is not running: its first process has exited`, { container: this.id });
  }

  async #waitRunning(done: Promise<number>): Promise<void> {
    const executor = this.#opts.executor;
    if (!executor.state) return;
    let ended = false;
    const settled = done.then(
      () => (ended = true),
      () => (ended = true),
    );
    for (let i = 0; i < 500 && !ended; i++) {
      const state = await executor.state(this.id);
      if (state === 'running' || state === 'stopped') return;
      await Promise.race([settled, new Promise((r) => setTimeout(r, 20))]);
    }
    // A failed start rejects here, as the caller's first sign of it.
    if (ended) await done;
  }
}

/** Checks a new container's request and turns it into an ExecOp's mounts (no outputs). */
export function containerExecOp(req: NewContainerRequest<pb.Mount>, entitlements: ReadonlySet<string>): { exec: pb.ExecOp; network: NetworkMode } {
  const network = req.network ?? 'sandbox';
  if (!['sandbox', 'none', 'host'].includes(network)) {
    throw new BktError('INVALID_ARGUMENT', `unknown network mode "${network}" (want sandbox, none or host)`, { attribute: 'network' });
  }
  if (network === 'host' && !entitlements.has(ENTITLEMENT_NETWORK_HOST)) {
    throw new BktError(
      'PERMISSION_DENIED',
      `network mode "host" needs the ${ENTITLEMENT_NETWORK_HOST} entitlement, which this build was not granted (--allow ${ENTITLEMENT_NETWORK_HOST})`,
      { attribute: 'network', entitlement: ENTITLEMENT_NETWORK_HOST },
    );
  }
  const constraints = (req.constraints ?? []).filter((c) => c.trim() !== '');
  if (constraints.length > 0) {
    throw new BktError('INVALID_ARGUMENT', `no worker satisfies the constraints ${constraints.map((c) => JSON.stringify(c)).join(', ')} (the runc worker has no labels to match)`, {
      attribute: 'constraints',
    });
  }
  // A container has no outputs: every writable mount is a fresh overlay thrown away on release.
  const mounts = req.mounts.map((m) => pb.Mount.fromPartial({ ...m, output: -1 }));
  const exec = pb.ExecOp.fromPartial({
    meta: { args: ['/bin/sh'] },
    mounts,
    network: network === 'host' ? pb.NetMode.HOST : network === 'none' ? pb.NetMode.NONE : pb.NetMode.UNSET,
  });
  return { exec, network };
}

/** Releases `container` when `ctx`'s build finishes or is cancelled. */
export function releaseWithBuild(container: RuncInteractiveContainer, ctx: BuildContext): void {
  const release = () => void container.release().catch(() => undefined);
  ctx.onFinish(() => container.release());
  if (ctx.signal.aborted) return release();
  ctx.signal.addEventListener('abort', release, { once: true });
  container.onRelease(() => ctx.signal.removeEventListener('abort', release));
}
