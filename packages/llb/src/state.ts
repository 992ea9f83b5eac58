import type { Platform } from '@bkt/core';
import { BktError } from '@bkt/core';
import type * as pb from '@bkt/api/pb';
import { toPlatform, type OpOptions } from './constraints.js';
import { ExecOp, type RunOptions, type NetworkMode, type SecurityMode, type UlimitName } from './exec.js';
import { FileOp, type FileAction } from './fileop.js';
import { EnvList } from './envlist.js';
import { marshal, marshalBytes, type MarshalOptions } from './marshal.js';
import { joinPath } from './paths.js';
import type { Output } from './vertex.js';

/** The values a state carries for the ops built on it (Go's state values `llb.exec.*`, `llb.platform`, …). */
export interface StateMeta {
  /** Environment in Go's `EnvList` order: a key moves to the end when set again. */
  readonly env: EnvList;
  readonly dir: string;
  readonly args?: readonly string[];
  readonly user?: string;
  readonly hostname?: string;
  readonly platform?: Platform;
  readonly network?: NetworkMode;
  readonly security?: SecurityMode;
  readonly extraHosts: readonly { host: string; ip: string }[];
  readonly ulimits: readonly { name: UlimitName; soft: number; hard: number }[];
  readonly cgroupParent?: string;
  readonly validExitCodes?: readonly number[];
  /**
   * The config JSON of the image this state came from, as `withImageConfig`
   * (and so `image(ref, { metaResolver })`) was given it. File and exec ops
   * keep it; `merge`, `diff` and `getMount` start without.
   */
  readonly imageConfig?: Uint8Array;
}

const EMPTY_META: StateMeta = Object.freeze({ env: EnvList.EMPTY, dir: '/', extraHosts: [], ulimits: [] });

/**
 * A filesystem state and the values ops built on it inherit (Go's `llb.State`).
 * Immutable: every method returns a new state. `output` is null for scratch.
 */
export class State {
  /** @internal Use `scratch()`, `image()`, … or `State.fromOutput`. */
  constructor(
    readonly output: Output | null,
    readonly meta: StateMeta,
  ) {}

  /** A state of `output` with fresh values (Go's `NewState`): dir `/`, the output's platform. */
  static fromOutput(output: Output | null): State {
    return new State(output, output?.platform ? { ...EMPTY_META, platform: output.platform } : EMPTY_META);
  }

  /** This state's values over another output (Go's `WithOutput`). */
  withOutput(output: Output | null): State {
    return new State(output, output?.platform ? { ...this.meta, platform: output.platform } : this.meta);
  }

  protected with(change: Partial<StateMeta>): State {
    return new State(this.output, { ...this.meta, ...change });
  }

  // -- values --------------------------------------------------------------

  /** Sets an environment variable (Go's `AddEnv`). */
  env(key: string, value: string): State {
    return this.with({ env: this.meta.env.set(key, value) });
  }

  /** Removes an environment variable. */
  delEnv(key: string): State {
    return this.with({ env: this.meta.env.delete(key) });
  }

  /** Sets the working directory; a relative one resolves against the current one (Go's `Dir`). */
  dir(dir: string): State {
    return this.with({ dir: dir.startsWith('/') ? dir : joinPath(this.meta.dir || '/', dir) });
  }

  user(user: string): State {
    return this.with({ user });
  }

  hostname(hostname: string): State {
    return this.with({ hostname });
  }

  /** Sets the command of later `run()`s (Go's `llb.Args`). */
  args(...args: string[]): State {
    return this.with({ args });
  }

  platform(p: Platform | string): State {
    return this.with({ platform: toPlatform(p) });
  }

  network(network: NetworkMode): State {
    return this.with({ network });
  }

  security(security: SecurityMode): State {
    return this.with({ security });
  }

  addExtraHost(host: string, ip: string): State {
    return this.with({ extraHosts: [...this.meta.extraHosts, { host, ip }] });
  }

  addUlimit(name: UlimitName, soft: number, hard: number): State {
    return this.with({ ulimits: [...this.meta.ulimits, { name, soft, hard }] });
  }

  cgroupParent(cgroupParent: string): State {
    return this.with({ cgroupParent });
  }

  validExitCodes(...codes: number[]): State {
    return this.with({ validExitCodes: codes });
  }

  /**
   * Applies an image config's `Env`, `WorkingDir` and platform (Go's
   * `WithImageConfig`) and keeps the config (`getImageConfig()`); `config`
   * is the image config JSON.
   */
  withImageConfig(config: string | Uint8Array): State {
    const bytes = typeof config === 'string' ? new Uint8Array(Buffer.from(config, 'utf8')) : config;
    const text = Buffer.from(bytes).toString('utf8');
    let img: { architecture?: string; os?: string; variant?: string; 'os.version'?: string; 'os.features'?: string[]; config?: { Env?: string[]; WorkingDir?: string } };
    try {
      img = JSON.parse(text);
    } catch (err) {
      throw new BktError('INVALID_ARGUMENT', `image config is not valid JSON: ${(err as Error).message}`);
    }
    let s: State = this.with({ imageConfig: bytes });
    for (const e of img.config?.Env ?? []) {
      const eq = e.indexOf('=');
      const key = eq < 0 ? e : e.slice(0, eq);
      if (key) s = s.env(key, eq < 0 ? '' : e.slice(eq + 1));
    }
    s = s.dir(img.config?.WorkingDir ?? '');
    if (img.architecture && img.os) {
      s = s.platform({
        os: img.os,
        architecture: img.architecture,
        ...(img.variant ? { variant: img.variant } : {}),
        ...(img['os.version'] ? { osVersion: img['os.version'] } : {}),
        ...(img['os.features'] ? { osFeatures: img['os.features'] } : {}),
      });
    }
    return s;
  }

  /** The config JSON of the image this state came from (see `StateMeta.imageConfig`), if any. */
  getImageConfig(): Uint8Array | undefined {
    return this.meta.imageConfig;
  }

  getEnv(key: string): string | undefined {
    return this.meta.env.get(key);
  }

  /** The environment as `KEY=value` strings, in order. */
  envList(): string[] {
    return this.meta.env.entries().map(([k, v]) => `${k}=${v}`);
  }

  getDir(): string {
    return this.meta.dir;
  }

  getArgs(): string[] {
    return [...(this.meta.args ?? [])];
  }

  getUser(): string {
    return this.meta.user ?? '';
  }

  getHostname(): string {
    return this.meta.hostname ?? '';
  }

  getPlatform(): Platform | undefined {
    return this.meta.platform;
  }

  getNetwork(): NetworkMode {
    return this.meta.network ?? 'sandbox';
  }

  getSecurity(): SecurityMode {
    return this.meta.security ?? 'sandbox';
  }

  // -- ops ----------------------------------------------------------------

  /** Runs a command in a container whose root is this state (Go's `Run`). */
  run(opts: RunOptions): ExecState {
    const exec = new ExecOp(this, opts);
    const after = this.withOutput(exec.rootOutput());
    return new ExecState(after.output, after.meta, exec);
  }

  /** Applies file actions to this state (Go's `File`): `s.file(mkdir('/app', 0o755).mkfile(...))`. */
  file(action: FileAction, opts: OpOptions = {}): State {
    return this.withOutput(new FileOp(this, action, opts).output);
  }

  /** The `pb.Definition` of this state and everything it depends on. */
  marshal(opts?: MarshalOptions): pb.Definition {
    return marshal(this, opts);
  }

  /** The encoded `pb.Definition` (what `buildctl build` reads on stdin). */
  marshalBytes(opts?: MarshalOptions): Uint8Array {
    return marshalBytes(this, opts);
  }
}

/** The state after `run()`: its root, and the outputs of its writable mounts (Go's `ExecState`). */
export class ExecState extends State {
  /** @internal */
  constructor(
    output: Output | null,
    meta: StateMeta,
    private readonly exec: ExecOp,
  ) {
    super(output, meta);
  }

  /** The root filesystem after the command ran. */
  root(): State {
    return new State(this.output, this.meta);
  }

  /** The state of the mount at `target` after the command ran (the source itself for read-only mounts). */
  getMount(target: string): State {
    const out = this.exec.mountOutput(target);
    if (out === undefined) {
      throw new BktError('INVALID_ARGUMENT', `run has no mount at "${target}" (mounts: ${this.exec.mountTargets().join(', ')})`);
    }
    return State.fromOutput(out);
  }
}
