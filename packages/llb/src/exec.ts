import { BktError } from '@bkt/core';
import * as pb from '@bkt/api/pb';
import { addCap, constraintsFrom, marshalConstraints, type Constraints, type OpOptions } from './constraints.js';
import { shlexSplit } from './shlex.js';
import type { State } from './state.js';
import { Output, sameInput, Vertex, type MarshalContext, type MarshalledVertex } from './vertex.js';

export type NetworkMode = 'sandbox' | 'host' | 'none';
export type SecurityMode = 'sandbox' | 'insecure';
export type UlimitName =
  | 'core' | 'cpu' | 'data' | 'fsize' | 'locks' | 'memlock' | 'msgqueue' | 'nice'
  | 'nofile' | 'nproc' | 'rss' | 'rtprio' | 'rttime' | 'sigpending' | 'stack';
export type CacheSharing = 'shared' | 'private' | 'locked';
export type ContentCache = 'default' | 'on' | 'off';

/** A state mounted at `target` (Go's `AddMount(target, source, …)`); writable unless `readonly`. */
export interface BindMount {
  type?: 'bind';
  target: string;
  source: State;
  /** Mount only this path of the source (Go's `SourcePath`). */
  selector?: string;
  readonly?: boolean;
  /** Writable, but its changes are discarded (Go's `ForceNoOutput`). */
  noOutput?: boolean;
  contentCache?: ContentCache;
}

/** A persistent cache directory shared across builds (Go's `AsPersistentCacheDir`). */
export interface CacheMount {
  type: 'cache';
  target: string;
  id: string;
  /** Default `shared`. */
  sharing?: CacheSharing;
  /** Initial contents of a new cache. */
  source?: State;
  selector?: string;
  /** Mounted read-only: the command cannot change the cache. */
  readonly?: boolean;
  contentCache?: ContentCache;
}

export interface TmpfsMount {
  type: 'tmpfs';
  target: string;
  /** Size limit in bytes. */
  size?: number;
}

/** A secret as a file (Go's `AddSecret`); the secret id defaults to the target path. */
export interface SecretMount {
  type: 'secret';
  target: string;
  id?: string;
  uid?: number;
  gid?: number;
  /** Default 0o400. */
  mode?: number;
  optional?: boolean;
}

/** The client's SSH agent socket (Go's `AddSSHSocket`). */
export interface SshMount {
  type: 'ssh';
  /** Default `/run/buildkit/ssh_agent.<n>`. */
  target?: string;
  id?: string;
  uid?: number;
  gid?: number;
  /** Default 0o600. */
  mode?: number;
  optional?: boolean;
}

export type Mount = BindMount | CacheMount | TmpfsMount | SecretMount | SshMount;

export interface RunOptions extends OpOptions {
  /** The command (exactly these argv words). */
  args?: string[];
  /** A command line run by `/bin/sh -c` (as a Dockerfile's shell-form RUN). */
  shell?: string;
  /** A command line split into words like a shell would, without running a shell (Go's `llb.Shlex`). */
  shlex?: string;
  /** Variables added for this command only. */
  env?: Record<string, string>;
  /** The working directory for this command (relative: against the state's). */
  cwd?: string;
  user?: string;
  hostname?: string;
  network?: NetworkMode;
  security?: SecurityMode;
  extraHosts?: { host: string; ip: string }[];
  ulimits?: { name: UlimitName; soft: number; hard: number }[];
  /** Exit codes that count as success (default: only 0). */
  validExitCodes?: number[];
  cgroupParent?: string;
  mounts?: Mount[];
  /** Secrets exposed as environment variables (Go's `SecretAsEnv`); `id` defaults to `name`. */
  secretEnv?: { name: string; id?: string; optional?: boolean }[];
  /** Mount the root filesystem read-only (Go's `ReadonlyRootFS`); the exec then has no root output. */
  readonlyRootfs?: boolean;
  proxyEnv?: { httpProxy?: string; httpsProxy?: string; ftpProxy?: string; noProxy?: string; allProxy?: string };
}

const NET: Record<NetworkMode, pb.NetMode> = { sandbox: pb.NetMode.UNSET, host: pb.NetMode.HOST, none: pb.NetMode.NONE };
const SECURITY: Record<SecurityMode, pb.SecurityMode> = { sandbox: pb.SecurityMode.SANDBOX, insecure: pb.SecurityMode.INSECURE };
const SHARING: Record<CacheSharing, pb.CacheSharingOpt> = {
  shared: pb.CacheSharingOpt.SHARED,
  private: pb.CacheSharingOpt.PRIVATE,
  locked: pb.CacheSharingOpt.LOCKED,
};
const CONTENT_CACHE: Record<ContentCache, pb.MountContentCache> = {
  default: pb.MountContentCache.DEFAULT,
  on: pb.MountContentCache.ON,
  off: pb.MountContentCache.OFF,
};

/** A filesystem mount of the exec (secrets and ssh are kept apart, as Go does). */
interface FsMount {
  target: string;
  source: Output | null;
  readonly: boolean;
  selector: string;
  cacheId: string;
  sharing: CacheSharing;
  tmpfs: boolean;
  tmpfsSize: number;
  noOutput: boolean;
  contentCache: ContentCache;
  output: Output | null;
}

function hasOutput(m: FsMount): boolean {
  return !m.noOutput && !m.readonly && !m.tmpfs && m.cacheId === '';
}

/** Canonical text of an IP address (Go's `net.IP.String()`), or an error naming it. */
function canonicalIP(ip: string, host: string): string {
  try {
    if (/^\d+\.\d+\.\d+\.\d+$/.test(ip)) return new URL(`http://${ip}/`).hostname;
    if (ip.includes(':')) return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    /* fall through */
  }
  throw new BktError('INVALID_ARGUMENT', `extra host "${host}": "${ip}" is not an IP address`, { attribute: 'extraHosts' });
}

/** ExecOp: runs a command with mounts (Go's `llb.ExecOp`). */
export class ExecOp extends Vertex {
  private readonly base: State;
  private readonly mounts: FsMount[] = [];
  private readonly secrets: SecretMount[] = [];
  private readonly ssh: SshMount[] = [];
  private readonly constraints: Constraints;
  private readonly root: Output | null;

  constructor(base: State, private readonly opts: RunOptions) {
    super();
    this.constraints = constraintsFrom(opts);
    // The values this exec runs with: the state's, then this run's options.
    let s = base;
    const commands = [opts.args, opts.shell, opts.shlex].filter((c) => c !== undefined).length;
    if (commands > 1) throw new BktError('INVALID_ARGUMENT', 'run: give only one of args, shell, shlex');
    if (opts.args) s = s.args(...opts.args);
    if (opts.shell !== undefined) s = s.args('/bin/sh', '-c', opts.shell);
    if (opts.shlex !== undefined) s = s.args(...shlexSplit(opts.shlex));
    for (const [k, v] of Object.entries(opts.env ?? {})) s = s.env(k, v);
    if (opts.cwd !== undefined) s = s.dir(opts.cwd);
    if (opts.user !== undefined) s = s.user(opts.user);
    if (opts.hostname !== undefined) s = s.hostname(opts.hostname);
    if (opts.network) s = s.network(opts.network);
    if (opts.security) s = s.security(opts.security);
    for (const h of opts.extraHosts ?? []) s = s.addExtraHost(h.host, h.ip);
    for (const u of opts.ulimits ?? []) s = s.addUlimit(u.name, u.soft, u.hard);
    if (opts.validExitCodes) s = s.validExitCodes(...opts.validExitCodes);
    if (opts.cgroupParent !== undefined) s = s.cgroupParent(opts.cgroupParent);
    this.base = s;
    if (s.getArgs().length === 0) {
      throw new BktError('INVALID_ARGUMENT', 'run: arguments are required (give args, shell or shlex, or set them with state.args())');
    }
    if (!s.getDir()) throw new BktError('INVALID_ARGUMENT', 'run: a working directory is required');
    if (!(s.getNetwork() in NET)) throw new BktError('INVALID_ARGUMENT', `run: unknown network mode "${s.getNetwork()}"`, { attribute: 'network' });
    if (!(s.getSecurity() in SECURITY)) throw new BktError('INVALID_ARGUMENT', `run: unknown security mode "${s.getSecurity()}"`, { attribute: 'security' });

    const platform = this.constraints.platform;
    const rootMount = this.addFsMount({ target: '/', source: base.output, readonly: opts.readonlyRootfs ?? false });
    this.root = rootMount.readonly ? base.output : new Output(this, () => this.outputIndex(rootMount), platform);
    rootMount.output = this.root;
    for (const m of opts.mounts ?? []) this.addMount(m);
  }

  private addFsMount(m: Partial<FsMount> & { target: string }): FsMount {
    const mount: FsMount = {
      source: null,
      readonly: false,
      selector: '',
      cacheId: '',
      sharing: 'shared',
      tmpfs: false,
      tmpfsSize: 0,
      noOutput: false,
      contentCache: 'default',
      output: null,
      ...m,
    };
    if (!mount.target.startsWith('/')) {
      throw new BktError('INVALID_ARGUMENT', `run: mount target "${mount.target}" must be an absolute path`, { attribute: 'mounts' });
    }
    if (this.mounts.some((x) => x.target === mount.target)) {
      throw new BktError('INVALID_ARGUMENT', `run: two mounts at "${mount.target}"`, { attribute: 'mounts' });
    }
    this.mounts.push(mount);
    return mount;
  }

  private addMount(m: Mount): void {
    switch (m.type) {
      case undefined:
      case 'bind': {
        const mount = this.addFsMount({
          target: m.target,
          source: m.source.output,
          readonly: m.readonly ?? false,
          selector: m.selector ?? '',
          noOutput: m.noOutput ?? false,
          contentCache: m.contentCache ?? 'default',
        });
        if (mount.readonly) mount.output = mount.source;
        else if (mount.noOutput) {
          mount.output = new Output(this, undefined, undefined, `mount marked no-output and ${m.target} can't be used as a parent`);
        } else mount.output = new Output(this, () => this.outputIndex(mount), this.constraints.platform);
        return;
      }
      case 'cache': {
        if (!m.id) throw new BktError('INVALID_ARGUMENT', `run: cache mount at "${m.target}" needs an id`, { attribute: 'mounts' });
        if (m.sharing && !(m.sharing in SHARING)) {
          throw new BktError('INVALID_ARGUMENT', `run: cache mount at "${m.target}": unknown sharing "${m.sharing}"`, { attribute: 'sharing' });
        }
        const mount = this.addFsMount({
          target: m.target,
          source: m.source?.output ?? null,
          selector: m.selector ?? '',
          readonly: m.readonly ?? false,
          cacheId: m.id,
          sharing: m.sharing ?? 'shared',
          contentCache: m.contentCache ?? 'default',
        });
        mount.output = new Output(this, undefined, undefined, `cache mount ${m.target} can't be used as a parent`);
        return;
      }
      case 'tmpfs': {
        const mount = this.addFsMount({ target: m.target, tmpfs: true, tmpfsSize: m.size ?? 0 });
        mount.output = new Output(this, undefined, undefined, `tmpfs mount for ${m.target} can't be used as a parent`);
        return;
      }
      case 'secret':
        this.secrets.push(m);
        return;
      case 'ssh':
        this.ssh.push(m);
        return;
      default:
        throw new BktError('INVALID_ARGUMENT', `run: unknown mount type "${(m as { type: string }).type}"`, { attribute: 'mounts' });
    }
  }

  /** Mounts in marshal order: by target (Go sorts them before marshalling). */
  private sortedMounts(): FsMount[] {
    return [...this.mounts].sort((a, b) => (a.target < b.target ? -1 : a.target > b.target ? 1 : 0));
  }

  private outputIndex(m: FsMount): number {
    let i = 0;
    for (const m2 of this.sortedMounts()) {
      if (!hasOutput(m2)) continue;
      if (m2 === m) return i;
      i++;
    }
    throw new BktError('INVALID_DEFINITION', `invalid mount: ${m.target}`);
  }

  rootOutput(): Output | null {
    return this.root;
  }

  /** The output of the mount at `target`; undefined when there is no such mount. */
  mountOutput(target: string): Output | null | undefined {
    return this.mounts.find((m) => m.target === target)?.output;
  }

  mountTargets(): string[] {
    return this.mounts.map((m) => m.target);
  }

  inputs(): Output[] {
    const seen = new Set<Output>();
    for (const m of this.sortedMounts()) if (m.source) seen.add(m.source);
    return [...seen];
  }

  protected build(ctx: MarshalContext): MarshalledVertex {
    const c: Constraints = { ...this.constraints, metadata: { ...this.constraints.metadata } };
    const meta = this.base.meta;
    let env = [...meta.env.entries()];
    const ssh = this.ssh.map((s, i) => ({ ...s, target: s.target ?? `/run/buildkit/ssh_agent.${i}` }));
    if (ssh.length > 0 && !env.some(([k]) => k === 'SSH_AUTH_SOCK')) env = [...env, ['SSH_AUTH_SOCK', ssh[0].target]];

    const execMeta: pb.Meta = {
      args: [...(meta.args ?? [])],
      env: env.map(([k, v]) => `${k}=${v}`),
      cwd: meta.dir,
      user: meta.user ?? '',
      proxyEnv: undefined,
      extraHosts: meta.extraHosts.map((h) => ({ Host: h.host, IP: canonicalIP(h.ip, h.host) })),
      hostname: meta.hostname ?? '',
      ulimit: meta.ulimits.map((u) => ({ Name: u.name, Soft: u.soft, Hard: u.hard })),
      cgroupParent: meta.cgroupParent ?? '',
      removeMountStubsRecursive: true,
      validExitCodes: meta.validExitCodes ? [...meta.validExitCodes] : [],
    };
    if (meta.validExitCodes) addCap(c.metadata, 'exec.validexitcode');
    if (meta.ulimits.length > 0) addCap(c.metadata, 'exec.meta.ulimit');
    const network = meta.network ?? 'sandbox';
    const security = meta.security ?? 'sandbox';
    if (network !== 'sandbox') addCap(c.metadata, 'exec.meta.network');
    if (security === 'insecure') addCap(c.metadata, 'exec.meta.security');
    const p = this.opts.proxyEnv;
    if (p) {
      execMeta.proxyEnv = {
        httpProxy: p.httpProxy ?? '',
        httpsProxy: p.httpsProxy ?? '',
        ftpProxy: p.ftpProxy ?? '',
        noProxy: p.noProxy ?? '',
        allProxy: p.allProxy ?? '',
      };
      addCap(c.metadata, 'exec.meta.proxyenv');
    }
    addCap(c.metadata, 'exec.meta.base');
    const mounts = this.sortedMounts();
    for (const m of mounts) {
      if (m.selector) addCap(c.metadata, 'exec.mount.selector');
      if (m.cacheId) {
        addCap(c.metadata, 'exec.mount.cache');
        addCap(c.metadata, 'exec.mount.cache.sharing');
      } else if (m.tmpfs) {
        addCap(c.metadata, 'exec.mount.tmpfs');
        if (m.tmpfsSize > 0) addCap(c.metadata, 'exec.mount.tmpfs.size');
      } else if (m.source) addCap(c.metadata, 'exec.mount.bind');
      if (m.contentCache !== 'default') addCap(c.metadata, 'exec.mount.cache.content');
    }
    const secretEnv = this.opts.secretEnv ?? [];
    if (this.secrets.length > 0 || secretEnv.length > 0) addCap(c.metadata, 'exec.mount.secret');
    if (secretEnv.length > 0) addCap(c.metadata, 'exec.secretenv');
    if (ssh.length > 0) addCap(c.metadata, 'exec.mount.ssh');

    if (!c.platform && meta.platform) c.platform = meta.platform;
    const { op, metadata } = marshalConstraints(ctx.constraints, c);
    const exec: pb.ExecOp = {
      meta: execMeta,
      mounts: [],
      network: NET[network],
      security: SECURITY[security],
      secretenv: secretEnv.map((s) => ({ ID: s.id ?? s.name, name: s.name, optional: s.optional ?? false })),
    };
    op.op = { $case: 'exec', value: exec };

    let outIndex = 0;
    for (const m of mounts) {
      let inputIndex = -1;
      if (m.source) {
        if (m.tmpfs) throw new BktError('INVALID_DEFINITION', 'tmpfs mounts must use scratch');
        const inp = m.source.toInput(ctx);
        inputIndex = op.inputs.findIndex((x) => sameInput(x, inp));
        if (inputIndex < 0) {
          inputIndex = op.inputs.length;
          op.inputs.push(inp);
        }
      }
      const output = hasOutput(m) ? outIndex++ : -1;
      exec.mounts.push({
        input: inputIndex,
        selector: m.selector,
        dest: m.target,
        output,
        readonly: m.readonly,
        mountType: m.cacheId ? pb.MountType.CACHE : m.tmpfs ? pb.MountType.TMPFS : pb.MountType.BIND,
        TmpfsOpt: m.tmpfs ? { size: m.tmpfsSize } : undefined,
        cacheOpt: m.cacheId ? { ID: m.cacheId, sharing: SHARING[m.sharing] } : undefined,
        secretOpt: undefined,
        SSHOpt: undefined,
        resultID: '',
        contentCache: CONTENT_CACHE[m.contentCache],
      });
    }
    for (const s of this.secrets) {
      exec.mounts.push({
        ...emptyMount(s.target, pb.MountType.SECRET),
        secretOpt: { ID: s.id ?? s.target, uid: s.uid ?? 0, gid: s.gid ?? 0, mode: s.mode ?? 0o400, optional: s.optional ?? false },
      });
    }
    for (const s of ssh) {
      exec.mounts.push({
        ...emptyMount(s.target, pb.MountType.SSH),
        SSHOpt: { ID: s.id ?? '', uid: s.uid ?? 0, gid: s.gid ?? 0, mode: s.mode ?? 0o600, optional: s.optional ?? false },
      });
    }
    return Vertex.encode(op, metadata, c.sourceLocations);
  }
}

function emptyMount(dest: string, mountType: pb.MountType): pb.Mount {
  return {
    input: -1,
    selector: '',
    dest,
    output: 0, // as Go leaves it: secret and ssh mounts have no output
    readonly: false,
    mountType,
    TmpfsOpt: undefined,
    cacheOpt: undefined,
    secretOpt: undefined,
    SSHOpt: undefined,
    resultID: '',
    contentCache: pb.MountContentCache.DEFAULT,
  };
}
