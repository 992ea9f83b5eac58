/**
 * The `exec` op executor: runs a `pb.ExecOp` in a container and returns the
 * snapshots of its outputs (the root's layer and any other writable mounts).
 */
import { join } from 'node:path';
import {
  BktError,
  withFailedExec,
  type BuildContext,
  type CacheMountStore,
  type ContainerProvider,
  type InteractiveContainer,
  type NewContainerRequest,
  type OpEnvelope,
  type OpExecutor,
  type OpInput,
  type Snapshot,
} from '@bkt/core';
import * as pb from '@bkt/api/pb';
import {
  containerExecOp,
  containerId,
  ENTITLEMENT_NETWORK_HOST,
  ENTITLEMENT_SECURITY_INSECURE,
  RuncInteractiveContainer,
  releaseWithBuild,
} from './container.js';
import type { ContainerSpec, Executor, NetworkMode } from './executor.js';
import { prepareMounts, type PreparedMounts } from './mounts.js';
import { StepOutput, DEFAULT_LOG_MAX_BYTES } from './output.js';
import { requireExecutable } from './platforms.js';
import { recordMountStubs } from './stubs.js';
import { cacheMountsFor, NAMESPACE as CACHE_MOUNTS } from './cachemounts.js';

export { ENTITLEMENT_NETWORK_HOST, ENTITLEMENT_SECURITY_INSECURE };

export interface ExecOpExecutorOptions {
  /** The executor for a store root (one per root, ready to run). */
  executorFor(storeRoot: string): Promise<Executor>;
  /** The directory for per-run scratch dirs of a store root. */
  runDirFor(storeRoot: string): string;
  /** Per-step log limit in bytes (default 2 MiB; ≤ 0: none). */
  logMaxBytes?: number;
  /** Where binfmt_misc is mounted (default `/proc/sys/fs/binfmt_misc`): the emulated platforms. */
  binfmtDir?: string;
}

/**
 * Runs exec ops, and declares core's `ContainerProvider` capability: the
 * interactive containers of `bkt debug`, `--invoke` and LLBBridge's
 * NewContainer, over `pb.Mount`s as an exec op's.
 */
export class ExecOpExecutor implements OpExecutor<pb.ExecOp>, ContainerProvider<pb.Mount>, CacheMountStore {
  readonly kind = 'exec' as const;
  readonly #opts: ExecOpExecutorOptions;

  constructor(opts: ExecOpExecutorOptions) {
    this.#opts = opts;
  }

  async run(exec: pb.ExecOp, inputs: OpInput[], ctx: BuildContext, envelope: OpEnvelope = {}): Promise<(Snapshot | null)[]> {
    const meta = exec.meta;
    if (!meta || meta.args.length === 0) {
      throw new BktError('INVALID_DEFINITION', 'exec op has no command (meta.args is empty)', { attribute: 'meta.args' });
    }
    checkEntitlements(exec, ctx.entitlements);
    await requireExecutable(envelope.platform, { binfmtDir: this.#opts.binfmtDir });
    if (ctx.signal.aborted) throw new BktError('CANCELLED', 'the build was cancelled before the step started');
    const executor = await this.#opts.executorFor(ctx.root);

    const commandLine = meta.args.join(' ');
    const id = containerId('');
    const prepared = await prepareMounts(exec, {
      ctx,
      inputs,
      runDir: join(this.#opts.runDirFor(ctx.root), id),
      commandLine,
      deferRoot: true,
    });
    try {
      const spec: ContainerSpec = {
        id,
        rootfs: prepared.rootfs,
        ...(prepared.rootfsMount ? { rootfsMount: prepared.rootfsMount } : {}),
        readonlyRootfs: prepared.readonlyRootfs,
        mounts: prepared.mounts,
        process: {
          args: meta.args,
          env: [...meta.env, ...proxyEnv(meta.proxyEnv), ...prepared.secretEnv],
          cwd: meta.cwd || '/',
          user: meta.user,
        },
        hostname: meta.hostname || undefined,
        extraHosts: meta.extraHosts.map((h) => ({ host: h.Host, ip: h.IP })),
        ulimits: meta.ulimit.map((u) => ({ name: u.Name, soft: u.Soft, hard: u.Hard })),
        cgroupParent: meta.cgroupParent || undefined,
        network: networkOf(exec.network),
        security: exec.security === pb.SecurityMode.INSECURE ? 'insecure' : 'sandbox',
        sensitive: prepared.sensitive,
      };
      const output = new StepOutput(ctx.progress, this.#opts.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES);
      const code = await executor.run(spec, {
        signal: ctx.signal,
        stdout: (d) => output.write(1, d),
        stderr: (d) => output.write(2, d),
        // The stubs runc makes in a writable root are removed before the root is committed.
        onRoot: (root) =>
          prepared.readonlyRootfs ? undefined : recordMountStubs(root, prepared.mounts.map((m) => m.dest), meta.removeMountStubsRecursive),
      });
      const valid = meta.validExitCodes.length > 0 ? meta.validExitCodes : [0];
      if (!valid.includes(code)) {
        const err = execFailed(ctx, commandLine, code, output.lastLines(20));
        // A step stopped by the build's end (its failure elsewhere, a cancellation) keeps nothing: no one will debug it.
        const mounts = ctx.signal.aborted ? exec.mounts.map(() => null) : await keepMounts(exec, prepared);
        if (ctx.vertex) withFailedExec(err, { opDigest: ctx.vertex.digest, name: ctx.vertex.name, op: exec, ...(envelope.platform ? { platform: envelope.platform } : {}), inputs: inputs.map((i) => i.snapshot), mounts });
        throw err;
      }

      // As the solver counts them: one past the highest output index of any mount.
      const outputCount = Math.max(-1, ...exec.mounts.map((m) => m.output)) + 1;
      const results: (Snapshot | null)[] = new Array(outputCount).fill(null);
      for (const [index, mutable] of prepared.outputs) {
        prepared.outputs.delete(index);
        results[index] = await mutable.commit();
      }
      return results;
    } finally {
      // Outputs not committed (failure, cancellation) are discarded here.
      for (const mutable of prepared.outputs.values()) await mutable.discard().catch(() => {});
      prepared.outputs.clear();
      await prepared.release();
    }
  }

  /**
   * A container over `req.mounts` (see core's `NewContainerRequest`): the
   * mounts are prepared as an exec step's (writable ones as overlays thrown
   * away on release), nothing runs until the first process starts.
   */
  /** Core's `CacheMountStore`: the cache mounts a cache export carries (`cache-mounts=true`). */
  async openCacheMount(id: string, ctx: BuildContext): Promise<{ path: string; release(): Promise<void> } | undefined> {
    const held = await cacheMountsFor(ctx.root, ctx.records?.namespace(CACHE_MOUNTS)).open(id, ctx.signal);
    return held ? { path: held.path, release: () => held.release() } : undefined;
  }

  async restoreCacheMount(id: string, fill: (dir: string) => Promise<void>, ctx: BuildContext): Promise<boolean> {
    const tmp = ctx.records?.tempPath('cachemount-import') ?? join(ctx.root, 'tmp', `cachemount-import-${process.pid}-${Date.now()}`);
    return cacheMountsFor(ctx.root, ctx.records?.namespace(CACHE_MOUNTS)).restore(id, fill, tmp, ctx.signal);
  }

  async newContainer(req: NewContainerRequest<pb.Mount>, ctx: BuildContext): Promise<InteractiveContainer> {
    const { exec, network } = containerExecOp(req, ctx.entitlements);
    await requireExecutable(req.platform, { binfmtDir: this.#opts.binfmtDir });
    if (ctx.signal.aborted) throw new BktError('CANCELLED', 'the build was cancelled before the container was made');
    const executor = await this.#opts.executorFor(ctx.root);
    const id = containerId('c');
    const prepared = await prepareMounts(exec, {
      ctx,
      inputs: req.inputs,
      runDir: join(this.#opts.runDirFor(ctx.root), id),
      commandLine: `container ${id}`,
    });
    const container = new RuncInteractiveContainer({
      id,
      executor,
      prepared,
      network,
      ...(req.hostname ? { hostname: req.hostname } : {}),
      extraHosts: req.extraHosts ?? [],
      entitlements: ctx.entitlements,
    });
    releaseWithBuild(container, ctx);
    return container;
  }
}

/**
 * A failed step's writable mounts as the process left them (for a debug
 * container): each committed, by mount index; null for the other mounts.
 * The committed snapshots are the build's: the solver removes them when
 * the build is over, whichever error ended it.
 */
async function keepMounts(exec: pb.ExecOp, prepared: PreparedMounts): Promise<(Snapshot | null)[]> {
  const kept: (Snapshot | null)[] = exec.mounts.map(() => null);
  for (const [index, mutable] of prepared.writable) {
    try {
      kept[index] = await mutable.commit();
    } catch {
      // Left to the release; the debug container then reads the mount's input instead.
    }
  }
  return kept;
}

function checkEntitlements(exec: pb.ExecOp, granted: ReadonlySet<string>): void {
  if (exec.network === pb.NetMode.HOST && !granted.has(ENTITLEMENT_NETWORK_HOST)) {
    throw new BktError(
      'PERMISSION_DENIED',
      `network mode "host" needs the ${ENTITLEMENT_NETWORK_HOST} entitlement, which this build was not granted (--allow ${ENTITLEMENT_NETWORK_HOST})`,
      { attribute: 'network', entitlement: ENTITLEMENT_NETWORK_HOST },
    );
  }
  if (exec.security === pb.SecurityMode.INSECURE && !granted.has(ENTITLEMENT_SECURITY_INSECURE)) {
    throw new BktError(
      'PERMISSION_DENIED',
      `security mode "insecure" needs the ${ENTITLEMENT_SECURITY_INSECURE} entitlement, which this build was not granted (--allow ${ENTITLEMENT_SECURITY_INSECURE})`,
      { attribute: 'security', entitlement: ENTITLEMENT_SECURITY_INSECURE },
    );
  }
}

function networkOf(mode: pb.NetMode): NetworkMode {
  switch (mode) {
    case pb.NetMode.UNSET:
      return 'sandbox';
    case pb.NetMode.NONE:
      return 'none';
    case pb.NetMode.HOST:
      return 'host';
    default:
      throw new BktError('INVALID_DEFINITION', `unknown network mode ${mode}`, { attribute: 'network' });
  }
}

/** Proxy settings as both upper- and lower-case variables, as BuildKit sets them. */
function proxyEnv(p: pb.ProxyEnv | undefined): string[] {
  if (!p) return [];
  const out: string[] = [];
  const add = (name: string, value: string) => {
    if (value) out.push(`${name.toUpperCase()}=${value}`, `${name}=${value}`);
  };
  add('http_proxy', p.httpProxy);
  add('https_proxy', p.httpsProxy);
  add('ftp_proxy', p.ftpProxy);
  add('no_proxy', p.noProxy);
  add('all_proxy', p.allProxy);
  return out;
}

function execFailed(scope: Pick<BuildContext, 'vertex'>, commandLine: string, code: number, lastLines: string[]): BktError {
  const step = scope.vertex?.name ? `${scope.vertex.name}: ` : '';
  const tail = lastLines.length > 0 ? `\nlast ${lastLines.length} lines of output:\n${lastLines.join('\n')}` : '';
  return new BktError(
    'EXEC_FAILED',
    `${step}process "${commandLine}" did not complete successfully: exit code: ${code}${tail}`,
    { opDigest: scope.vertex?.digest, exitCode: code, lastLines },
  );
}
