/**
 * `bkt debug build --addr unix://… …` and `bkt build --invoke CMD --addr …`:
 * through bktd's buildx Controller, as buildx's remote controller does it.
 * The build is a Controller `Build` (its Status followed into the same
 * displays), kept open by the daemon; the process is an `Invoke` stream
 * (this terminal's input, resizes and output), then `Disconnect` releases
 * the build. The Controller reads the build's paths (context, Dockerfile,
 * named contexts, output destinations) on the daemon's machine, as
 * buildx's controller server does on the client's: only a daemon on this
 * machine (`unix://`) is asked, and it must serve the Controller
 * (`bktd --controller`).
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as controller from '@bkt/api/controller';
import { BktError, type ProgressEvent } from '@bkt/core';
import { progressEvents } from '@bkt/session';
import type { SolveResponse } from '@bkt/solver';
import { lendTerminal, writeBytes, type Invocation } from '../invoke.js';
import type { DaemonAddress } from './address.js';
import type { RemoteSolveRequest } from './solve.js';

/** Runs the build through bktd's Controller and the invocation in it; resolves or rejects with the build's outcome. */
export async function remoteDebugSolve(address: DaemonAddress, req: RemoteSolveRequest, inv: Invocation): Promise<SolveResponse> {
  if (!address.address.startsWith('unix://')) {
    throw new BktError('UNIMPLEMENTED', `--invoke and bkt debug through a daemon need one on this machine (unix://): bktd's Controller reads the build's paths where it runs, not over a session (${address.address})`, {
      attribute: 'addr',
    });
  }
  const options = buildOptions(req, inv.secretIds ?? []);
  const client = new controller.ControllerClient(address.target, grpc.credentials.createInsecure());
  const ref = newRef();
  const signal = req.signal ?? new AbortController().signal;
  const steps = new Map<string, boolean>();
  try {
    const status = client.status(controller.StatusRequest.fromPartial({ Ref: ref }));
    const statusDone = new Promise<void>((resolve) => {
      status.on('data', (res: controller.StatusResponse) => {
        for (const e of progressEvents(res) as ProgressEvent[]) {
          if (e.type === 'vertex' && !e.vertex.name.startsWith('[internal]') && !/^(exporting|\[frontend\])/.test(e.vertex.name)) steps.set(e.vertex.digest, e.vertex.cached);
          req.onProgress?.(e);
        }
      });
      status.on('end', () => resolve());
      status.on('error', () => resolve());
    });
    const t0 = performance.now();
    let exporterResponse: Record<string, string> | undefined;
    let error: Error | undefined;
    try {
      exporterResponse = (await unary<controller.BuildResponse>(client, 'build', controller.BuildRequest.fromPartial({ Ref: ref, Options: options }), signal)).ExporterResponse;
    } catch (err) {
      error = buildError(err);
    }
    const solverMs = performance.now() - t0;
    await Promise.race([statusDone, new Promise((r) => setTimeout(r, 5000))]);
    const cfg = inv.config;
    if (error ? cfg.onError : cfg.onResult) {
      inv.beforeRun(error ? { error } : {});
      inv.io.stderr.write(
        error
          ? `bkt debug: the build failed; running ${describe(cfg)} in the failed step's container (as the step left it; exit to leave)\n`
          : `bkt: running ${describe(cfg)} in the build result (exit to leave)\n`,
      );
      const code = await invoke(client, ref, inv, signal).catch((err: unknown) => {
        inv.io.stderr.write(`bkt: ${(err as Error).message}\n`);
        return undefined;
      });
      if (code !== undefined) inv.io.stderr.write(`${error ? 'bkt debug' : 'bkt --invoke'}: ${describe(cfg)} exited with code ${code}; container released\n`);
    }
    if (error) throw error;
    const cached = [...steps.values()].filter(Boolean).length;
    return { buildId: ref, result: { ref: null, metadata: {} }, exporterResponse: exporterResponse ?? {}, stats: { vertices: steps.size, cached, solverMs } };
  } finally {
    // The daemon holds the build (its snapshots, containers) until it is disconnected, whatever happened here.
    await unary(client, 'disconnect', controller.DisconnectRequest.fromPartial({ Ref: ref }), AbortSignal.timeout(10_000)).catch(() => undefined);
    client.close();
  }
}

function describe(cfg: Invocation['config']): string {
  return [...(cfg.entrypoint ?? []), ...(cfg.args ?? ['/bin/sh'])].join(' ');
}

/** An Invoke stream attached to this terminal; resolves with the process's exit code. */
function invoke(client: controller.ControllerClient, ref: string, inv: Invocation, signal: AbortSignal): Promise<number> {
  const { config: cfg, io } = inv;
  const call = client.invoke();
  const send = (input: controller.Message['Input']) => {
    if (!call.writableEnded) call.write(controller.Message.fromPartial({ Input: input }));
  };
  const term = lendTerminal(
    io,
    cfg.tty,
    (d) => send({ $case: 'File', value: { Fd: 0, EOF: d === null, Data: d ?? Buffer.alloc(0) } }),
    (size) => send({ $case: 'Resize', value: { Rows: size.rows, Cols: size.cols } }),
  );
  const out = writeBytes(io.stdout);
  const err = writeBytes(io.stderr);
  return new Promise<number>((resolve, reject) => {
    const onAbort = () => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    const finish = () => {
      signal.removeEventListener('abort', onAbort);
      term.restore();
    };
    call.on('data', (m: controller.Message) => {
      if (m.Input?.$case === 'File') (m.Input.value.Fd === 2 ? err : out)(m.Input.value.Data);
    });
    call.on('end', () => {
      finish();
      resolve(0);
    });
    call.on('error', (e: grpc.ServiceError) => {
      finish();
      const code = /exited with code (\d+)/.exec(e.details ?? '');
      if (code) resolve(Number(code[1]));
      else reject(new BktError('INTERNAL', `the debug process failed: ${e.details || e.message}`));
    });
    send({
      $case: 'Init',
      value: {
        Ref: ref,
        ProcessID: '',
        InvokeConfig: controller.InvokeConfig.fromPartial({
          Entrypoint: cfg.entrypoint ?? [],
          Cmd: cfg.args ?? [],
          Env: cfg.env,
          User: cfg.user ?? '',
          Cwd: cfg.cwd ?? '',
          Tty: term.tty,
        }),
      },
    });
    if (term.tty) send({ $case: 'Resize', value: { Rows: term.size().rows, Cols: term.size().cols } });
  });
}

/** BuildOptions of a Dockerfile solve the CLI prepared (its frontend attributes and local directories). */
function buildOptions(req: RemoteSolveRequest, secretIds: string[]): controller.BuildOptions {
  if (req.frontend !== 'dockerfile.v0' || req.definition) {
    throw new BktError('UNIMPLEMENTED', '--invoke and bkt debug through a daemon build Dockerfiles (the Controller has no --llb)', { attribute: 'llb' });
  }
  if (secretIds.length > 0) {
    throw new BktError('UNIMPLEMENTED', `--secret with --invoke or bkt debug through a daemon is not supported yet (secret ${secretIds.join(', ')}); build without --addr`, { attribute: 'secret' });
  }
  const attrs = req.frontendAttrs ?? {};
  const dirs = req.localDirs;
  if (!dirs.context || !dirs.dockerfile) throw new BktError('INVALID_ARGUMENT', 'a Dockerfile build needs its context and Dockerfile directories');
  const prefixed = (prefix: string) =>
    Object.fromEntries(Object.entries(attrs).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
  const named: Record<string, string> = {};
  for (const [name, value] of Object.entries(prefixed('context:'))) {
    if (value.startsWith('local:')) {
      const dir = dirs[value.slice('local:'.length)];
      if (!dir) throw new BktError('INVALID_ARGUMENT', `--build-context ${name}: its directory is not among the build's`, { attribute: 'build-context' });
      named[name] = dir;
    } else named[name] = value;
  }
  const noCache = attrs['no-cache'];
  return controller.BuildOptions.fromPartial({
    ContextPath: dirs.context,
    DockerfileName: join(dirs.dockerfile, attrs.filename ?? 'Dockerfile'),
    BuildArgs: prefixed('build-arg:'),
    Labels: prefixed('label:'),
    NamedContexts: named,
    Target: attrs.target ?? '',
    Allow: req.entitlements ?? [],
    NoCache: !!req.noCache || noCache === '',
    NoCacheFilter: noCache ? noCache.split(',') : [],
    Pull: attrs['image-resolve-mode'] === 'pull',
    Platforms: attrs.platform ? attrs.platform.split(',') : [],
    ExtraHosts: attrs['add-hosts'] ? attrs['add-hosts'].split(',') : [],
    NetworkMode: attrs['force-network-mode'] ?? '',
    ShmSize: attrs['shm-size'] ? Number(attrs['shm-size']) : 0,
    Exports: req.exporters.map(({ type, ...a }) => ({ Type: type, Attrs: Object.fromEntries(Object.entries(a).map(([k, v]) => [k, String(v)])), Destination: typeof a.dest === 'string' ? a.dest : '' })),
    CacheFrom: (req.cacheImports ?? []).map((c) => ({ Type: c.type, Attrs: c.attrs })),
    CacheTo: (req.cacheExports ?? []).map((c) => ({ Type: c.type, Attrs: c.attrs })),
  });
}

function unary<Res>(client: controller.ControllerClient, method: string, req: unknown, signal: AbortSignal): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (r: unknown, cb: (e: grpc.ServiceError | null, r: Res) => void) => grpc.ClientUnaryCall>)[method]!;
    const call = fn.call(client, req, (e, r) => (e ? reject(e) : resolve(r)));
    signal.addEventListener('abort', () => call.cancel(), { once: true });
  });
}

/** The build's failure as the CLI reports one: its message, exit 1. */
function buildError(err: unknown): Error {
  const e = err as grpc.ServiceError;
  if (e.code === grpc.status.CANCELLED) return new BktError('CANCELLED', e.details || 'the build was cancelled');
  if (e.code === grpc.status.UNIMPLEMENTED) return new BktError('UNIMPLEMENTED', e.details || e.message);
  if (e.code === grpc.status.INVALID_ARGUMENT) return new BktError('INVALID_ARGUMENT', e.details || e.message);
  return new BktError(e.code === grpc.status.UNKNOWN ? 'EXEC_FAILED' : 'INTERNAL', e.details || e.message);
}

function newRef(): string {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
  return Array.from(crypto.getRandomValues(new Uint8Array(25)), (b) => alphabet[b % 36]).join('');
}
