/**
 * Turning an ExecOp's `pb.Mount`s into container mounts: snapshots prepared
 * or mounted, cache mounts held, secrets written to a tmpfs, ssh-agent
 * sockets forwarded. Everything acquired is given back by `release()`.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { chmod, chown, mkdir, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BktError, type BuildContext, type MutableSnapshot, type OpInput, type Snapshot } from '@bkt/core';
import * as pb from '@bkt/api/pb';
import { cacheMountsFor, NAMESPACE as CACHE_NAMESPACE, type CacheSharing } from './cachemounts.js';
import type { ContainerMount } from './executor.js';
import { rootPath } from './rootpath.js';
import { bindSubdirectory } from './subdir.js';
import { mountsUnder, mountTmpfs, unmount } from './sys.js';

/** The build's forwarded ssh-agents (`BuildContext.ssh`), re-exported for callers of this package. */
export type { SshAgentProvider } from '@bkt/core';

/** BuildKit's default destinations. */
export const DEFAULT_SECRET_DIR = '/run/secrets';
export const DEFAULT_SSH_SOCKET = '/run/buildkit/ssh_agent.0';

export interface PreparedMounts {
  /** Host path of the container's root (with `rootfsMount`: the empty directory it is mounted on). */
  rootfs: string;
  /** The root's filesystem when the executor mounts it itself (`MountContext.deferRoot`); see `ContainerSpec.rootfsMount`. */
  rootfsMount?: { type: string; source: string; options: string };
  readonlyRootfs: boolean;
  mounts: ContainerMount[];
  /** Writable snapshots by the op's output index: the caller commits or discards each. */
  outputs: Map<number, MutableSnapshot>;
  /** Every writable BIND mount's tree by mount index (outputs included; a failed step's are kept for debugging). */
  writable: Map<number, MutableSnapshot>;
  /** `NAME=value` entries from `ExecOp.secretenv`. */
  secretEnv: string[];
  /** True when secret values are involved (secret env or files). */
  sensitive: boolean;
  /** Discards the non-output snapshots, unmounts, releases holds; idempotent. */
  release(): Promise<void>;
}

export interface MountContext {
  ctx: BuildContext;
  inputs: OpInput[];
  /** A scratch directory for this run (secrets tmpfs, ssh sockets, empty dirs), made when first needed; removed by release. */
  runDir: string;
  /** Describes cache mounts in `bkt du`. */
  commandLine: string;
  /** A writable root is left for the executor to mount (`PreparedMounts.rootfsMount`) when its snapshotter can. */
  deferRoot?: boolean;
}

export async function prepareMounts(exec: pb.ExecOp, mc: MountContext): Promise<PreparedMounts> {
  const cleanups: (() => Promise<void>)[] = [];
  const outputs = new Map<number, MutableSnapshot>();
  const release = async () => {
    const pending = cleanups.splice(0).reverse();
    for (const c of pending) {
      try {
        await c();
      } catch {
        // Best effort: one failed cleanup must not keep the others from running.
      }
    }
  };
  try {
    // The scratch dir is made on first need (most steps need none); removed last, when it was.
    let runDirMade = false;
    const runDir = async (): Promise<string> => {
      if (!runDirMade) {
        await mkdir(mc.runDir, { recursive: true, mode: 0o700 });
        runDirMade = true;
      }
      return mc.runDir;
    };
    cleanups.push(async () => {
      if (!runDirMade) return;
      // What is still mounted under the scratch dir (a cache directory) must not be emptied with it.
      for (const point of await mountsUnder(await realpath(mc.runDir).catch(() => mc.runDir))) await unmount(point);
      await rm(mc.runDir, { recursive: true, force: true });
    });
    const secrets = new SecretFiles(async () => join(await runDir(), 'secrets'), cleanups);
    const result: PreparedMounts = {
      rootfs: '',
      readonlyRootfs: false,
      mounts: [],
      outputs,
      writable: new Map(),
      secretEnv: [],
      sensitive: false,
      release,
    };

    const rootMounts = exec.mounts.filter((m) => m.dest === '/');
    if (rootMounts.length !== 1) {
      throw new BktError('INVALID_DEFINITION', `exec op needs exactly one mount on "/", found ${rootMounts.length}`, {
        attribute: 'mounts',
      });
    }
    for (const [index, m] of exec.mounts.entries()) {
      const where = `mount ${index} (${m.dest})`;
      if (!m.dest.startsWith('/')) {
        throw new BktError('INVALID_DEFINITION', `${where}: destination must be absolute`, { attribute: 'mounts' });
      }
      // Only writable bind mounts have outputs; other kinds' `output` is ignored (Go's llb leaves 0 there).
      if (m.output >= 0 && m.readonly && m.mountType === pb.MountType.BIND) {
        throw new BktError('INVALID_DEFINITION', `${where}: a readonly mount cannot have an output`, {
          attribute: 'mounts',
        });
      }
      switch (m.mountType) {
        case pb.MountType.BIND: {
          const input = inputSnapshot(mc.inputs, m.input, where);
          let source: string;
          if (m.readonly) {
            source = input ? await mountReadonly(input, cleanups) : await emptyDir(await runDir(), index);
          } else {
            const defer = mc.deferRoot === true && m.dest === '/' && (!m.selector || m.selector === '/');
            const mutable = await mc.ctx.snapshotter.prepare(input, { description: `exec ${mc.commandLine} ${m.dest}`, ...(defer ? { deferMount: true } : {}) });
            if (defer && mutable.deferredMount) result.rootfsMount = mutable.deferredMount;
            result.writable.set(index, mutable);
            if (m.output >= 0) {
              if (outputs.has(m.output)) {
                throw new BktError('INVALID_DEFINITION', `${where}: output ${m.output} is used twice`, { attribute: 'mounts' });
              }
              outputs.set(m.output, mutable);
            }
            // Outputs belong to the caller (commit or discard); the others are thrown away by release().
            else cleanups.push(() => mutable.discard());
            source = mutable.path;
          }
          if (m.selector && m.selector !== '/') {
            const sub = rootPath(source, m.selector);
            if (!existsSync(sub)) {
              throw new BktError('NOT_FOUND', `${where}: ${m.selector} does not exist in input ${m.input}`, {
                attribute: 'selector',
              });
            }
            source = sub;
          }
          if (m.dest === '/') {
            result.rootfs = source;
            result.readonlyRootfs = m.readonly;
          } else {
            result.mounts.push({ type: 'bind', source, dest: m.dest, readonly: m.readonly });
          }
          break;
        }
        case pb.MountType.CACHE: {
          const opt = m.cacheOpt;
          const id = opt?.ID || m.dest;
          const input = inputSnapshot(mc.inputs, m.input, where);
          let base: { key: string; path: string } | undefined;
          if (input) {
            const mounted = await input.mount();
            cleanups.push(() => mounted.release());
            base = { key: input.id, path: rootPath(mounted.path, m.selector || '/') };
            await checkCacheSource(base.path, m);
          }
          const held = await cacheMountsFor(mc.ctx.root, mc.ctx.records?.namespace(CACHE_NAMESPACE)).acquire({
            id,
            sharing: sharingOf(opt?.sharing),
            base,
            description: `cached mount ${m.dest} from exec ${mc.commandLine} with id "${id}"`,
            signal: mc.ctx.signal,
          });
          cleanups.push(() => held.release());
          // With a from= input, source= chose what seeded the cache; without one, it is a directory of the cache.
          const source = !input && isSubdirectory(m.selector) ? await mountCacheSubdir(held.path, m, join(await runDir(), `cache-${index}`), cleanups) : held.path;
          result.mounts.push({ type: 'bind', source, dest: m.dest, readonly: m.readonly });
          break;
        }
        case pb.MountType.TMPFS:
          result.mounts.push({ type: 'tmpfs', dest: m.dest, sizeBytes: m.TmpfsOpt?.size || undefined });
          break;
        case pb.MountType.SECRET: {
          const opt = m.secretOpt;
          if (!opt?.ID) throw new BktError('INVALID_DEFINITION', `${where}: secret mount without an ID`, { attribute: 'secretOpt' });
          const value = await mc.ctx.secrets.get(opt.ID);
          if (value === null) {
            if (opt.optional) break;
            throw new BktError('NOT_FOUND', `secret ${opt.ID} not found (${where})`, { attribute: 'secret', secret: opt.ID });
          }
          const file = await secrets.write(value, opt.uid, opt.gid, opt.mode ?? 0o400);
          result.mounts.push({ type: 'bind', source: file, dest: m.dest, readonly: true });
          result.sensitive = true;
          break;
        }
        case pb.MountType.SSH: {
          const opt = m.SSHOpt;
          const id = opt?.ID || 'default';
          const agent = await mc.ctx.ssh.socketPath(id);
          if (!agent) {
            if (opt?.optional) break;
            throw new BktError('NOT_FOUND', `no SSH agent forwarded for id "${id}" (${where}): pass --ssh ${id}`, {
              attribute: 'ssh',
            });
          }
          const socket = await forwardAgent(agent, join(await runDir(), 'ssh'), index, opt, cleanups, (err) =>
            mc.ctx.progress.warn(`ssh agent forwarding for ${m.dest} failed: ${err.message}`),
          );
          result.mounts.push({ type: 'bind', source: socket, dest: m.dest, readonly: false });
          break;
        }
        default:
          throw new BktError('UNIMPLEMENTED', `${where}: unknown mount type ${m.mountType}`, { attribute: 'mountType' });
      }
    }

    for (const env of exec.secretenv) {
      if (!env.ID || !env.name) {
        throw new BktError('INVALID_DEFINITION', 'secret env needs an ID and a name', { attribute: 'secretenv' });
      }
      const value = await mc.ctx.secrets.get(env.ID);
      if (value === null) {
        if (env.optional) continue;
        throw new BktError('NOT_FOUND', `secret ${env.ID} not found (secret env ${env.name})`, {
          attribute: 'secretenv',
          secret: env.ID,
        });
      }
      result.secretEnv.push(`${env.name}=${Buffer.from(value).toString('utf8')}`);
      result.sensitive = true;
    }
    return result;
  } catch (err) {
    for (const mutable of outputs.values()) await mutable.discard().catch(() => {});
    await release();
    throw err;
  }
}

function inputSnapshot(inputs: OpInput[], index: number, where: string): Snapshot | null {
  if (index < 0) return null;
  if (index >= inputs.length) {
    throw new BktError('INVALID_DEFINITION', `${where}: input ${index} does not exist (op has ${inputs.length})`, {
      attribute: 'mounts',
    });
  }
  return inputs[index].snapshot;
}

async function mountReadonly(snapshot: Snapshot, cleanups: (() => Promise<void>)[]): Promise<string> {
  const mounted = await snapshot.mount();
  cleanups.push(() => mounted.release());
  return mounted.path;
}

async function emptyDir(runDir: string, index: number): Promise<string> {
  const dir = join(runDir, `empty-${index}`);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  return dir;
}

/**
 * A cache mount seeded from its `from=` input (`source=`: the selector) needs
 * a directory there: a clear `NOT_FOUND` / `INVALID_ARGUMENT` naming the
 * mount, rather than `cp`'s error from seeding it.
 */
async function checkCacheSource(hostPath: string, m: pb.Mount): Promise<void> {
  const source = m.selector || '/';
  const what = `cache mount ${m.dest} (from= input ${m.input}, source=${source})`;
  let st;
  try {
    st = await stat(hostPath);
  } catch {
    throw new BktError('NOT_FOUND', `${what}: ${source} does not exist in the from= input`, {
      attribute: 'cacheOpt',
      target: m.dest,
      source,
    });
  }
  if (!st.isDirectory()) {
    throw new BktError('INVALID_ARGUMENT', `${what}: ${source} in the from= input is not a directory`, {
      attribute: 'cacheOpt',
      target: m.dest,
      source,
    });
  }
}

function isSubdirectory(selector: string): boolean {
  return selector.split('/').some((p) => p !== '' && p !== '.');
}

/**
 * `source=` of a cache mount without `from=`, as BuildKit mounts it: that
 * directory of the cache (missing directories are created, 0755 root),
 * resolved inside the cache directory and bind-mounted through the opened
 * directory's descriptor on `mountPoint`, which the container gets. What a
 * step left in the cache (a symlink to `/`, to `../..`) resolves inside it;
 * a swap after the resolution changes nothing (subdir.ts).
 */
async function mountCacheSubdir(cacheDir: string, m: pb.Mount, mountPoint: string, cleanups: (() => Promise<void>)[]): Promise<string> {
  cleanups.push(() => unmount(mountPoint));
  await bindSubdirectory(cacheDir, m.selector, mountPoint, { create: true, what: `cache mount ${m.dest} (source=${m.selector})` });
  return mountPoint;
}

function sharingOf(s: pb.CacheSharingOpt | undefined): CacheSharing {
  if (s === pb.CacheSharingOpt.PRIVATE) return 'private';
  if (s === pb.CacheSharingOpt.LOCKED) return 'locked';
  return 'shared';
}

/** Secret files on a tmpfs mounted on first use: their bytes never touch a disk or a snapshot. */
class SecretFiles {
  #dir: string | undefined;
  #n = 0;
  constructor(
    /** Where the tmpfs goes (its parent made on the call). */
    readonly dirOf: () => Promise<string>,
    readonly cleanups: (() => Promise<void>)[],
  ) {}

  async write(value: Uint8Array, uid: number, gid: number, mode: number): Promise<string> {
    if (!this.#dir) {
      const dir = await this.dirOf();
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await mountTmpfs(dir, { mode: 0o700, sizeBytes: 64 * 1024 * 1024 });
      this.#dir = dir;
      this.cleanups.push(() => unmount(dir));
    }
    const file = join(this.#dir, `secret-${++this.#n}`);
    await writeFile(file, value, { mode: 0o600 });
    await chown(file, uid, gid);
    await chmod(file, mode & 0o7777);
    return file;
  }
}

/**
 * A socket owned by uid:gid with `mode` whose connections are piped to the
 * agent's socket, so the step gets the permissions it asked for without the
 * agent's socket being changed or exposed.
 */
async function forwardAgent(
  agent: string,
  dir: string,
  index: number,
  opt: pb.SSHOpt | undefined,
  cleanups: (() => Promise<void>)[],
  onError: (err: Error) => void,
): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o711 });
  const socket = join(dir, `agent-${index}.sock`);
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(agent);
    open.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => {
      server.off('error', reject);
      // A listening server that fails (e.g. EMFILE on accept) must not crash the worker.
      server.on('error', onError);
      resolve();
    });
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  );
  await chown(socket, opt?.uid ?? 0, opt?.gid ?? 0);
  await chmod(socket, (opt?.mode ?? 0o600) & 0o7777);
  return socket;
}
