/**
 * The `gateway.v0` frontend: runs a frontend image (attr `source`) in a
 * container of the build, with LLBBridge served over the process's
 * stdin/stdout, as BuildKit's `frontend/gateway` does:
 *
 * - the image's config is resolved through the bridge (so the build's
 *   source policy applies), its caps label checked against the requested
 *   `frontend.caps`, its rootfs solved from `image(ref@digest)`;
 * - the process is the image's Entrypoint (`/run` without one), its Env
 *   plus `BUILDKIT_FRONTEND_OPT_<n>=<key>=<value>` for every attribute,
 *   `BUILDKIT_SESSION_ID`, `BUILDKIT_WORKERS`, `BUILDKIT_EXPORTEDPRODUCT`,
 *   cwd its WorkingDir; its own definition is at
 *   `/run/config/buildkit/metadata/frontend.bin` (read-only);
 * - its container has no network (loopback only) unless the plugin is
 *   configured with `network: 'sandbox'` and the image does not carry
 *   `moby.buildkit.frontend.network.none=true`;
 * - the result is what the frontend passed to `Return`; a process that
 *   exits without returning fails the build with its exit code and the
 *   end of its stderr.
 *
 * A `source` naming Docker's official Dockerfile frontend
 * (`docker/dockerfile`, any tag or digest) is served by the built-in
 * `dockerfile.v0` instead, and the progress says so.
 */
import { Duplex, PassThrough } from 'node:stream';
import * as pb from '@bkt/api/pb';
import { BktError, type Attrs, type BuildContext, type BuildResult, type Frontend, type FrontendBridge, type Snapshot } from '@bkt/core';
import { hostPlatform, normalizeReference, parseReference } from '@bkt/oci';
import { image } from '@bkt/llb';
import { LLBBridgeSession, type GatewayWorker } from './session.js';
import { serveOverStream } from './serve.js';

/** Labels of a frontend image BuildKit reads. */
export const LABEL_CAPS = 'moby.buildkit.frontend.caps';
export const LABEL_NETWORK_NONE = 'moby.buildkit.frontend.network.none';
/** Where a frontend finds its own definition. */
export const METADATA_DIR = '/run/config/buildkit/metadata';
/** How long a frontend process may run on once its build failed or was cancelled. */
const KILL_GRACE_MS = 5_000;
/** The product name a frontend reads in `BUILDKIT_EXPORTEDPRODUCT`. */
export const EXPORTED_PRODUCT = 'bkt';

export interface GatewayFrontendOptions {
  /**
   * Repositories a `source` may name (`docker.io/acme/frontend`, tags and
   * digests ignored), as buildkitd's `allowedRepositories`. Empty or absent:
   * any.
   */
  allowedRepositories?: string[];
  /**
   * The frontend container's network: `none` (default, loopback only) or
   * `sandbox` (the worker's network, unless the image's
   * `moby.buildkit.frontend.network.none` label says `true`).
   */
  network?: 'none' | 'sandbox';
  /** The workers reported in `BUILDKIT_WORKERS` and Ping (default: this host's one runc worker). */
  workers?: GatewayWorker[];
}

/** Whether `ref` names Docker's official Dockerfile frontend, which bkt implements itself. */
export function isDockerfileFrontend(ref: string): boolean {
  try {
    return parseReference(ref).repository === 'docker/dockerfile' && ['docker.io', 'registry-1.docker.io', 'index.docker.io'].includes(parseReference(ref).registry);
  } catch {
    return false;
  }
}

interface ImageConfigJSON {
  config?: { Entrypoint?: string[] | null; Cmd?: string[] | null; Env?: string[] | null; WorkingDir?: string; Labels?: Record<string, string> | null };
}

function defaultWorkers(): GatewayWorker[] {
  return [{ id: 'bkt', labels: { 'org.mobyproject.buildkit.worker.executor': 'oci' }, platforms: [hostPlatform()] }];
}

/** `BUILDKIT_WORKERS`: the workers as Go's JSON of `[]client.WorkerInfo`. */
function workersJSON(workers: GatewayWorker[]): string {
  return JSON.stringify(
    workers.map((w) => ({
      ID: w.id,
      Labels: w.labels,
      Platforms: w.platforms.map((p) => ({ architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}) })),
      GCPolicy: null,
      BuildkitVersion: { package: '', version: '', revision: '' },
    })),
  );
}

function capsOf(list: string | undefined): Set<string> {
  return new Set((list ?? '').split(',').map((c) => c.trim()).filter(Boolean));
}

export function gatewayFrontend(opts: GatewayFrontendOptions = {}): Frontend {
  const allowed = (opts.allowedRepositories ?? []).map((r) => repositoryOf(r, 'allowedRepositories'));
  return {
    name: 'gateway.v0',
    async solve(attrs: Attrs, bridge: FrontendBridge, ctx: BuildContext): Promise<BuildResult> {
      const source = attrs.source;
      if (!source) throw new BktError('INVALID_ARGUMENT', 'gateway.v0: no source specified (the frontend image, --opt source=IMAGE)', { attribute: 'source' });
      if (isDockerfileFrontend(source)) {
        ctx.progress.log(1, `${source} is Docker's Dockerfile frontend: using bkt's built-in dockerfile.v0\n`);
        const { source: _s, cmdline: _c, ...rest } = attrs;
        return bridge.solveFrontend('dockerfile.v0', rest, bridge.inputs);
      }
      const repository = repositoryOf(source, 'source');
      if (allowed.length > 0 && !allowed.includes(repository)) {
        throw new BktError('PERMISSION_DENIED', `gateway.v0: '${source}' is not an allowed gateway source (allowed: ${allowed.join(', ')})`, { attribute: 'source' });
      }
      if (!bridge.resolveImageConfig) throw new BktError('UNIMPLEMENTED', `gateway.v0 ${source}: this build resolves no image configs (add @bkt/source-image)`);

      const resolved = await bridge.resolveImageConfig(source);
      let img: ImageConfigJSON;
      try {
        img = JSON.parse(Buffer.from(resolved.config).toString()) as ImageConfigJSON;
      } catch (err) {
        throw new BktError('INVALID_ARGUMENT', `gateway.v0 ${source}: the image config is not JSON: ${(err as Error).message}`, { attribute: 'source' });
      }
      const labels = img.config?.Labels ?? {};
      const offered = capsOf(labels[LABEL_CAPS]);
      const required = capsOf(attrs['frontend.caps']);
      if (bridge.inputs && Object.keys(bridge.inputs).length > 0) required.add('moby.buildkit.frontend.inputs');
      for (const cap of required) {
        if (!offered.has(cap)) {
          throw new BktError('UNIMPLEMENTED', `gateway.v0 ${source}: the frontend does not support capability ${cap} (its ${LABEL_CAPS} label: ${[...offered].join(',') || 'none'})`, {
            attribute: 'frontend.caps',
            capability: cap,
          });
        }
      }

      if (!bridge.newContainer) throw new BktError('UNIMPLEMENTED', `gateway.v0 ${source}: no registered exec executor runs containers (add @bkt/worker-runc)`);
      const pinned = `${normalizeReference(source).replace(/@sha256:[0-9a-f]{64}$/, '')}@${resolved.digest}`;
      const definition = image(pinned).marshal();
      const rootfs = (await bridge.solve(pb.Definition.encode(definition).finish())).ref;
      const metadata = await metadataSnapshot(definition, ctx);

      const network = opts.network === 'sandbox' && labels[LABEL_NETWORK_NONE] !== 'true' ? 'sandbox' : 'none';
      const container = await bridge.newContainer({
        mounts: [
          pb.Mount.fromPartial({ input: 0, dest: '/', output: -1, readonly: false, mountType: pb.MountType.BIND }),
          pb.Mount.fromPartial({ input: 1, dest: METADATA_DIR, output: -1, readonly: true, mountType: pb.MountType.BIND }),
        ],
        inputs: [{ snapshot: rootfs }, { snapshot: metadata }],
        network,
      });
      const session = new LLBBridgeSession({ bridge, workers: opts.workers ?? defaultWorkers(), signal: ctx.signal });
      const toFrontend = new PassThrough();
      const fromFrontend = new PassThrough();
      const server = serveOverStream(session, Duplex.from({ readable: fromFrontend, writable: toFrontend }));
      const stderrTail: string[] = [];
      try {
        const env = [
          ...(img.config?.Env ?? []),
          ...Object.entries(attrs).map(([k, v], i) => `BUILDKIT_FRONTEND_OPT_${i}=${k}=${v}`),
          `BUILDKIT_SESSION_ID=${ctx.buildId}`,
          `BUILDKIT_WORKERS=${workersJSON(opts.workers ?? defaultWorkers())}`,
          `BUILDKIT_EXPORTEDPRODUCT=${EXPORTED_PRODUCT}`,
        ];
        const args = img.config?.Entrypoint?.length ? img.config.Entrypoint : ['/run'];
        const proc = await container.start(
          { args, env, cwd: img.config?.WorkingDir || '/' },
          {
            stdin: toFrontend,
            stdout: (d) => fromFrontend.write(d),
            stderr: (d) => {
              ctx.progress.log(2, d);
              const text = Buffer.from(d).toString();
              stderrTail.push(...text.split('\n').filter(Boolean));
              stderrTail.splice(0, Math.max(0, stderrTail.length - 20));
            },
          },
        );
        // A failed step or a cancellation aborts the build: the frontend has a moment to Return (its error annotated) before it is killed.
        let killer: NodeJS.Timeout | undefined;
        const onAbort = () => {
          killer = setTimeout(() => void proc.signal('KILL').catch(() => undefined), KILL_GRACE_MS);
        };
        if (ctx.signal.aborted) onAbort();
        else ctx.signal.addEventListener('abort', onAbort, { once: true });
        let code: number;
        try {
          code = await proc.wait();
        } finally {
          ctx.signal.removeEventListener('abort', onAbort);
          clearTimeout(killer);
        }
        if (session.hasReturned) return session.result();
        if (ctx.signal.aborted) throw new BktError('CANCELLED', `gateway.v0 ${source}: the build was cancelled`);
        const tail = stderrTail.length ? `\nlast ${stderrTail.length} lines of its stderr:\n${stderrTail.join('\n')}` : '';
        throw new BktError('EXEC_FAILED', `gateway.v0 ${source}: the frontend exited with code ${code} without returning a result${tail}`, {
          exitCode: code,
          attribute: 'source',
        });
      } finally {
        server.close();
        toFrontend.end();
        fromFrontend.end();
        await session.discard();
        await container.release();
      }
    },
  };
}

/** A read-only tree holding `frontend.bin`: the frontend's own marshalled definition. */
async function metadataSnapshot(definition: pb.Definition, ctx: BuildContext): Promise<Snapshot> {
  const { writeFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const mut = await ctx.snapshotter.prepare(null, { description: 'gateway frontend metadata' });
  try {
    await writeFile(join(mut.path, 'frontend.bin'), pb.Definition.encode(definition).finish(), { mode: 0o444 });
    return await mut.commit();
  } catch (err) {
    await mut.discard();
    throw err;
  }
}

/** The repository of an image reference (`docker.io/acme/frontend`), tags and digests dropped. */
function repositoryOf(ref: string, attribute: string): string {
  try {
    const r = parseReference(ref);
    return `${r.registry}/${r.repository}`;
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `gateway.v0: invalid image reference "${ref}": ${(err as Error).message}`, { attribute });
  }
}
