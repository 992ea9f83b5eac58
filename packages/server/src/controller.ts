/**
 * buildx's `buildx.controller.v1.Controller` (seed 002): a long-lived build
 * session a client (buildx's remote controller, a debugger) drives — Build,
 * Status, Input, Invoke, List, Disconnect, Info, ListProcesses,
 * DisconnectProcess. The handlers translate messages; the builds kept open
 * and their processes are `DebugBuilds` (debug-builds.ts). As buildx's own
 * controller server, it runs on the client's machine: `BuildOptions` paths
 * (context, Dockerfile, named contexts, secrets, ssh sockets, export
 * destinations) are paths of the machine bktd runs on.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { existsSync, readFileSync, statSync } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import * as controller from '@bkt/api/controller';
import { BktError, type ProgressEvent } from '@bkt/core';
import { statusResponse } from '@bkt/session';
import type { ExportRequest, SolveRequest, Solver } from '@bkt/solver';
import type { BuildTracker } from './builds.js';
import { DebugBuilds, type DebugProcess, type InvokeOptions, type ProcessSink } from './debug-builds.js';
import { statusOf, type ServiceImplementation } from './rpc.js';
import { buildkitVersion } from './worker.js';

export interface ControllerBackend {
  solver: Solver;
  builds: BuildTracker;
  debugBuilds: DebugBuilds;
  /** Entitlements a build may ask for. */
  permittedEntitlements: ReadonlySet<string>;
  shutdown: AbortSignal;
  afterBuild?(): void;
}

const REF = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Refs whose Input is kept before their Build reads it; the oldest is dropped past this. */
const INPUT_REFS = 64;
/** Input kept per ref (a Dockerfile). */
const INPUT_BYTES = 16 << 20;
/** Input no Build read within this is dropped. */
const INPUT_TTL_MS = 5 * 60_000;

/**
 * Input (stdin) a client streams for a ref, read by its build when the
 * Dockerfile is `-`. Bounded: at most `INPUT_REFS` refs, `INPUT_BYTES` each,
 * kept `INPUT_TTL_MS` unless read.
 */
export class Inputs {
  readonly #data = new Map<string, { chunks: Buffer[]; bytes: number; created: number; done: Promise<void>; finish(): void }>();

  #entry(ref: string) {
    let e = this.#data.get(ref);
    if (!e) {
      const now = Date.now();
      for (const [r, old] of this.#data) if (now - old.created > INPUT_TTL_MS) this.#data.delete(r);
      while (this.#data.size >= INPUT_REFS) this.#data.delete(this.#data.keys().next().value!);
      let finish!: () => void;
      const done = new Promise<void>((resolve) => (finish = resolve));
      e = { chunks: [], bytes: 0, created: now, done, finish };
      this.#data.set(ref, e);
    }
    return e;
  }

  /** Adds `data` to ref's input; `INVALID_ARGUMENT` past `INPUT_BYTES`. */
  add(ref: string, data: Buffer): void {
    const e = this.#entry(ref);
    if (e.bytes + data.length > INPUT_BYTES) {
      this.#data.delete(ref);
      throw new BktError('INVALID_ARGUMENT', `Input for ref ${ref}: more than ${INPUT_BYTES} bytes (a Dockerfile)`, { attribute: 'Data' });
    }
    e.bytes += data.length;
    e.chunks.push(Buffer.from(data));
  }

  end(ref: string): void {
    this.#entry(ref).finish();
  }

  /** Refs with input kept. */
  refs(): string[] {
    return [...this.#data.keys()];
  }

  /** All of ref's input once it ended; `INVALID_ARGUMENT` when none arrives within `ms`. */
  async read(ref: string, ms: number): Promise<Buffer> {
    const e = this.#entry(ref);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new BktError('INVALID_ARGUMENT', `BuildOptions.DockerfileName "-": no Input for ref ${ref} ended within ${ms / 1000}s`, { attribute: 'DockerfileName' })), ms);
    });
    try {
      await Promise.race([e.done, late]);
    } finally {
      clearTimeout(timer);
      if (this.#data.get(ref) === e) this.#data.delete(ref);
    }
    return Buffer.concat(e.chunks);
  }

  forget(ref: string): void {
    this.#data.delete(ref);
  }
}

/**
 * The Controller as served where it is not enabled: every method answers
 * `UNIMPLEMENTED` with `why` (how to enable it).
 */
export function controllerDisabled(why: string): ServiceImplementation<typeof controller.ControllerService> {
  const refuse = () => new BktError('UNIMPLEMENTED', why);
  const refuseStream = (call: { on(e: 'error', f: () => void): void; emit(e: 'error', s: unknown): boolean }) => {
    call.on('error', () => undefined);
    call.emit('error', statusOf(refuse()));
  };
  return {
    build: async () => Promise.reject(refuse()),
    status: async function* () {
      throw refuse();
    },
    input: (call, callback) => {
      call.on('error', () => undefined);
      callback(statusOf(refuse()));
    },
    invoke: (call) => refuseStream(call),
    list: async () => Promise.reject(refuse()),
    disconnect: async () => Promise.reject(refuse()),
    info: async () => Promise.reject(refuse()),
    listProcesses: async () => Promise.reject(refuse()),
    disconnectProcess: async () => Promise.reject(refuse()),
  };
}

export function controllerService(backend: ControllerBackend): ServiceImplementation<typeof controller.ControllerService> {
  const inputs = new Inputs();
  return {
    async build(req, { signal }) {
      const ref = req.Ref === '' ? newRef() : req.Ref;
      if (!REF.test(ref)) throw new BktError('INVALID_ARGUMENT', `BuildRequest.Ref "${ref.slice(0, 200)}": want letters, digits, ".", "_", ":" or "-" (at most 128)`, { attribute: 'Ref' });
      const opts = req.Options;
      if (!opts) throw new BktError('INVALID_ARGUMENT', 'BuildRequest.Options is missing', { attribute: 'Options' });
      const held = () => {
        if (backend.debugBuilds.has(ref)) throw new BktError('INVALID_ARGUMENT', `a build with ref ${ref} is already held; disconnect it first`, { attribute: 'Ref' });
      };
      held();
      const temps: string[] = [];
      const cleanup = () => Promise.all(temps.map((t) => rm(t, { recursive: true, force: true }))).then(() => undefined);
      let solve: Omit<SolveRequest, 'debug' | 'buildId'>;
      try {
        solve = await solveRequestOf(opts, ref, backend, inputs, temps);
        held();
      } catch (err) {
        await cleanup();
        throw err;
      }
      // The client's cancelling its Build call cancels the build until it has an outcome; the daemon's shutdown always.
      const controller = new AbortController();
      const onAbort = (s: AbortSignal) => () => controller.abort(s.reason);
      const onCall = onAbort(signal);
      const onShutdown = onAbort(backend.shutdown);
      let tracked: ReturnType<BuildTracker['start']>;
      try {
        tracked = backend.builds.start(ref, { frontend: 'dockerfile.v0', frontendAttrs: solve.frontendAttrs ?? {}, exporters: solve.exporters ?? [] });
      } catch (err) {
        await cleanup();
        throw err;
      }
      signal.addEventListener('abort', onCall, { once: true });
      backend.shutdown.addEventListener('abort', onShutdown, { once: true });
      let started = false;
      try {
        const build = backend.debugBuilds.start(ref, backend.solver, { ...solve, signal: controller.signal, onProgress: tracked.onProgress });
        started = true;
        void build.finished.finally(async () => {
          backend.shutdown.removeEventListener('abort', onShutdown);
          await cleanup();
          backend.afterBuild?.();
        });
        const exporterResponse = await build.outcome;
        if (opts.MetadataFile) await writeFile(opts.MetadataFile, JSON.stringify(exporterResponse, null, 2) + '\n');
        return { ExporterResponse: exporterResponse };
      } finally {
        signal.removeEventListener('abort', onCall);
        if (!started) {
          backend.shutdown.removeEventListener('abort', onShutdown);
          await cleanup();
        }
        tracked.finish();
      }
    },

    async *status(req, { signal }) {
      if (req.Ref === '') throw new BktError('INVALID_ARGUMENT', 'StatusRequest.Ref is empty', { attribute: 'Ref' });
      // As BuildKit's: a ref not started yet is waited for (a client subscribes before it calls Build).
      for await (const batch of backend.builds.progress(req.Ref, signal)) yield statusOf2(batch);
    },

    input(call: grpc.ServerReadableStream<controller.InputMessage, controller.InputResponse>, callback: grpc.sendUnaryData<controller.InputResponse>) {
      let ref: string | undefined;
      let failed = false;
      const fail = (err: unknown) => {
        if (failed) return;
        failed = true;
        callback(statusOf(err));
      };
      call.on('data', (msg: controller.InputMessage) => {
        if (failed) return;
        const input = msg.Input;
        if (input?.$case === 'Init') {
          if (ref !== undefined) return fail(new BktError('INVALID_ARGUMENT', 'Input: a second Init message', { attribute: 'Init' }));
          if (!REF.test(input.value.Ref)) return fail(new BktError('INVALID_ARGUMENT', `InputInitMessage.Ref "${input.value.Ref.slice(0, 200)}" is not a build ref`, { attribute: 'Ref' }));
          ref = input.value.Ref;
        } else if (input?.$case === 'Data') {
          if (ref === undefined) return fail(new BktError('INVALID_ARGUMENT', 'Input: Data before Init (the first message names the build ref)', { attribute: 'Init' }));
          try {
            inputs.add(ref, input.value.Data);
          } catch (err) {
            return fail(err);
          }
          if (input.value.EOF) inputs.end(ref);
        }
      });
      call.on('end', () => {
        if (failed) return;
        if (ref !== undefined) inputs.end(ref);
        callback(null, {});
      });
      call.on('error', () => undefined);
    },

    invoke(call) {
      invokeCall(call, backend.debugBuilds);
    },

    async list() {
      return { keys: backend.debugBuilds.refs() };
    },

    async disconnect(req) {
      inputs.forget(req.Ref);
      await backend.debugBuilds.disconnect(req.Ref);
      return {};
    },

    async info() {
      const v = buildkitVersion();
      return { buildxVersion: { package: v.package, version: v.version, revision: v.revision } };
    },

    async listProcesses(req) {
      const build = backend.debugBuilds.get(req.Ref);
      return { Infos: [...build.processes.values()].map((p) => ({ ProcessID: p.id, InvokeConfig: invokeConfigOf(p.options) })) };
    },

    async disconnectProcess(req) {
      await backend.debugBuilds.get(req.Ref).disconnectProcess(req.ProcessID);
      return {};
    },
  };
}

/** A Controller StatusResponse: control.proto's, field for field. */
function statusOf2(batch: ProgressEvent[]): controller.StatusResponse {
  return statusResponse(batch);
}

/**
 * One Invoke stream: the first message (`Init`) starts a process in the
 * build's container or re-attaches to a running one by id; then stdin
 * (`File` fd 0), `Resize` and `Signal`; the process's output goes back as
 * `File` fd 1 / 2. The stream ends with the process (OK on exit code 0, else
 * an error naming the code); a client closing it detaches, the process
 * runs on.
 */
function invokeCall(call: grpc.ServerDuplexStream<controller.Message, controller.Message>, builds: DebugBuilds): void {
  let proc: DebugProcess | undefined;
  let ended = false;
  const sink: ProcessSink = {
    output: (fd, data) => {
      if (!ended) call.write({ Input: { $case: 'File', value: { Fd: fd, EOF: false, Data: Buffer.from(data) } } });
    },
  };
  const end = (err?: unknown) => {
    if (ended) return;
    ended = true;
    proc?.detach(sink);
    if (err === undefined) call.end();
    else call.emit('error', statusOf(err));
  };
  let queue = Promise.resolve();
  const handle = async (msg: controller.Message) => {
    const input = msg.Input;
    if (!input) return;
    if (input.$case === 'Init') {
      if (proc) throw new BktError('INVALID_ARGUMENT', 'Invoke: a second Init message on one stream', { attribute: 'Init' });
      const { Ref, ProcessID, InvokeConfig } = input.value;
      const build = builds.get(Ref);
      const existing = ProcessID ? build.processes.get(ProcessID) : undefined;
      if (existing) {
        proc = existing;
        proc.attach(sink);
      } else {
        proc = await build.start(ProcessID, invokeOptionsOf(InvokeConfig), sink);
      }
      const p = proc;
      p.exited.then(
        (code) => end(code === 0 ? undefined : new BktError('EXEC_FAILED', `process ${p.id} exited with code ${code}`, { exitCode: code })),
        (err: unknown) => end(err),
      );
      return;
    }
    if (!proc) throw new BktError('INVALID_ARGUMENT', `Invoke: ${input.$case} before Init (the first message starts or names the process)`, { attribute: 'Init' });
    switch (input.$case) {
      case 'File':
        if (input.value.Fd !== 0) throw new BktError('INVALID_ARGUMENT', `Invoke: File messages from the client are stdin (fd 0), not fd ${input.value.Fd}`, { attribute: 'Fd' });
        if (input.value.Data.length > 0) proc.write(input.value.Data);
        if (input.value.EOF) proc.closeStdin();
        return;
      case 'Resize':
        await proc.resize({ rows: input.value.Rows, cols: input.value.Cols });
        return;
      case 'Signal':
        await proc.signal(input.value.Name);
        return;
    }
  };
  call.on('data', (msg: controller.Message) => {
    queue = queue.then(() => (ended ? undefined : handle(msg))).catch((err: unknown) => end(err));
  });
  // The client closing its side (or going away) detaches; the process runs on for a later Invoke.
  call.on('end', () => {
    void queue.then(() => {
      if (!proc) end(new BktError('INVALID_ARGUMENT', 'Invoke: the stream ended without an Init message', { attribute: 'Init' }));
      else if (!ended) {
        ended = true;
        proc.detach(sink);
        call.end();
      }
    });
  });
  call.on('cancelled', () => {
    ended = true;
    proc?.detach(sink);
  });
  call.on('error', () => undefined);
}

function invokeOptionsOf(c: controller.InvokeConfig | undefined): InvokeOptions {
  return {
    entrypoint: c?.Entrypoint ?? [],
    cmd: c?.Cmd ?? [],
    env: c?.Env ?? [],
    user: c?.User ?? '',
    noUser: c?.NoUser ?? false,
    cwd: c?.Cwd ?? '',
    noCwd: c?.NoCwd ?? false,
    tty: c?.Tty ?? false,
    rollback: c?.Rollback ?? false,
  };
}

function invokeConfigOf(o: InvokeOptions): controller.InvokeConfig {
  return { Entrypoint: o.entrypoint, Cmd: o.cmd, Env: o.env, User: o.user, NoUser: o.noUser, Cwd: o.cwd, NoCwd: o.noCwd, Tty: o.tty, Rollback: o.rollback };
}

/**
 * The solve request of BuildOptions (a Dockerfile build through
 * `dockerfile.v0`, as buildx makes it); a field bkt cannot honour is an
 * error naming it.
 */
async function solveRequestOf(
  o: controller.BuildOptions,
  ref: string,
  backend: ControllerBackend,
  inputs: Inputs,
  temps: string[],
): Promise<Omit<SolveRequest, 'debug' | 'buildId'>> {
  const unsupported = (field: string, why: string) => new BktError('UNIMPLEMENTED', `BuildOptions.${field}: ${why}`, { attribute: field });
  if (o.ContextPath === '') throw new BktError('INVALID_ARGUMENT', 'BuildOptions.ContextPath is empty (the build context directory)', { attribute: 'ContextPath' });
  if (o.ContextPath === '-') throw unsupported('ContextPath', 'a context streamed over Input (a tar) is not supported; give a directory');
  if (o.PrintFunc !== '') throw unsupported('PrintFunc', `--call ${o.PrintFunc} is not supported through the Controller`);
  if (o.ExportLoad) throw unsupported('ExportLoad', 'loading into a Docker engine is not supported through the Controller');
  const attests = o.Attests.filter((a) => !a.Disabled);
  if (attests.length > 0) throw unsupported('Attests', `attestations (${attests.map((a) => a.Type).join(', ')}) are not made yet`);
  for (const s of o.Secrets) if (s.Env !== '' && s.FilePath === '') throw unsupported('Secrets', `secret ${s.ID} from an environment variable: give its FilePath (bktd's environment is not the client's)`);
  if (o.SSH.length > 0) throw unsupported('SSH', `ssh agents (${o.SSH.map((s) => s.ID || 'default').join(', ')}) are not forwarded through the Controller yet`);

  const context = resolve(o.ContextPath);
  if (!existsSync(context) || !statSync(context).isDirectory()) throw new BktError('NOT_FOUND', `BuildOptions.ContextPath ${o.ContextPath} is not a directory`, { attribute: 'ContextPath' });
  const localDirs: Record<string, string> = { context };
  const attrs: Record<string, string> = {};
  if (o.DockerfileName === '-') {
    const dir = await mkdtemp(join(tmpdir(), 'bktd-dockerfile-'));
    temps.push(dir);
    await writeFile(join(dir, 'Dockerfile'), await inputs.read(ref, 30_000));
    localDirs.dockerfile = dir;
    attrs.filename = 'Dockerfile';
  } else {
    const file = o.DockerfileName === '' ? join(context, 'Dockerfile') : isAbsolute(o.DockerfileName) ? o.DockerfileName : join(context, o.DockerfileName);
    if (!existsSync(file) || statSync(file).isDirectory()) throw new BktError('NOT_FOUND', `BuildOptions.DockerfileName: no Dockerfile ${file}`, { attribute: 'DockerfileName' });
    localDirs.dockerfile = join(file, '..');
    attrs.filename = file.slice(file.lastIndexOf('/') + 1);
  }
  if (o.Target) attrs.target = o.Target;
  for (const [k, v] of Object.entries(o.BuildArgs)) attrs[`build-arg:${k}`] = v;
  for (const [k, v] of Object.entries(o.Labels)) attrs[`label:${k}`] = v;
  for (const [name, value] of Object.entries(o.NamedContexts)) {
    if (isAbsolute(value) && existsSync(value) && statSync(value).isDirectory()) {
      attrs[`context:${name}`] = `local:${name}`;
      localDirs[name] = value;
    } else attrs[`context:${name}`] = value;
  }
  if (o.Platforms.length > 0) attrs.platform = o.Platforms.join(',');
  if (o.Pull) attrs['image-resolve-mode'] = 'pull';
  if (o.NoCache) attrs['no-cache'] = '';
  else if (o.NoCacheFilter.length > 0) attrs['no-cache'] = o.NoCacheFilter.join(',');
  if (o.ExtraHosts.length > 0) attrs['add-hosts'] = o.ExtraHosts.map((h) => h.replace(/^([^=:]+)[:=]/, '$1=')).join(',');
  if (o.NetworkMode !== '' && o.NetworkMode !== 'default') attrs['force-network-mode'] = o.NetworkMode;
  if (o.ShmSize > 0) attrs['shm-size'] = String(o.ShmSize);
  if (o.CgroupParent) attrs['cgroup-parent'] = o.CgroupParent;
  const ulimits = Object.values(o.Ulimits?.values ?? {});
  if (ulimits.length > 0) attrs.ulimit = ulimits.map((u) => `${u.Name}=${u.Soft}:${u.Hard}`).join(',');

  for (const e of o.Allow) {
    if (!backend.permittedEntitlements.has(e)) {
      const permitted = [...backend.permittedEntitlements].sort().join(', ') || 'none';
      throw new BktError('PERMISSION_DENIED', `BuildOptions.Allow: ${e} is not permitted by this daemon (permitted: ${permitted})`, { attribute: e });
    }
  }

  const exporters: ExportRequest[] = [];
  for (const e of o.Exports) {
    const a: Record<string, string> = { ...e.Attrs };
    if (e.Destination !== '' && a.dest === undefined) a.dest = e.Destination;
    if ((e.Type === 'image' || e.Type === 'registry') && a.name === undefined && o.Tags.length > 0) a.name = o.Tags.join(',');
    if (o.ExportPush && (e.Type === 'image' || e.Type === 'registry')) a.push = 'true';
    exporters.push({ type: e.Type === 'registry' ? 'image' : e.Type, attrs: e.Type === 'registry' ? { ...a, push: 'true' } : a });
  }
  if (o.Exports.length === 0 && o.Tags.length > 0) exporters.push({ type: 'image', attrs: { name: o.Tags.join(','), ...(o.ExportPush ? { push: 'true' } : {}) } });

  const secrets = new Map(o.Secrets.map((s) => [s.ID, s.FilePath]));
  // The solver's host client over these directories and secrets (it never sends the store root).
  return {
    frontend: 'dockerfile.v0',
    frontendAttrs: attrs,
    exporters,
    localDirs,
    secrets: { get: async (id) => (secrets.has(id) ? readFileSync(secrets.get(id)!) : null) },
    noCache: o.NoCache,
    entitlements: o.Allow,
    ...(o.CacheFrom.length > 0 ? { cacheImports: o.CacheFrom.map((c) => ({ type: c.Type, attrs: { ...c.Attrs } })) } : {}),
    ...(o.CacheTo.length > 0 ? { cacheExports: o.CacheTo.map((c) => ({ type: c.Type, attrs: { ...c.Attrs } })) } : {}),
  };
}

function newRef(): string {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
  return Array.from(crypto.getRandomValues(new Uint8Array(25)), (b) => alphabet[b % 36]).join('');
}
