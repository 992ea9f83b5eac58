/**
 * One frontend's LLBBridge session: the translation of LLBBridge messages
 * (seed 001, `moby.buildkit.v1.frontend`) into calls of a `FrontendBridge`,
 * and the state BuildKit's `llbBridgeForwarder` keeps for one frontend run —
 * the results it solved, by ref id (referenceable until released or the
 * session ends), its containers, and what it returned.
 *
 * Nothing here knows how the messages travel: `serve.ts` serves a session
 * over a frontend's stdio, bktd over its main endpoint.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { PassThrough } from 'node:stream';
import * as gw from '@bkt/api/gateway';
import * as pb from '@bkt/api/pb';
import type * as apicaps from '@bkt/api/apicaps';
import type * as types from '@bkt/api/types';
import {
  BktError,
  failedExecOf,
  type BuildResult,
  type ContainerProcess,
  type FileStat,
  type FrontendBridge,
  type InteractiveContainer,
  type Platform,
  type Snapshot,
} from '@bkt/core';
import { goModeOf } from '@bkt/fsutil';
import { FRONTEND_CAPS, LLB_CAPS } from './caps.js';
import { bktErrorOfStatus, grpcStatusOf, solveErrorDetail, withErrorDetails, type ErrorDetail } from './errors.js';

/** A worker as Ping and `BUILDKIT_WORKERS` describe it. */
export interface GatewayWorker {
  id: string;
  labels: Record<string, string>;
  platforms: Platform[];
}

export interface LLBBridgeSessionOptions {
  /** The build's bridge: every call is translated to it. */
  bridge: FrontendBridge;
  /** The workers reported by Ping (default: none). */
  workers?: GatewayWorker[];
  /** Aborted when the session's build is cancelled: pending calls fail CANCELLED. */
  signal?: AbortSignal;
}

/** A solved result the frontend holds by id. */
interface HeldRef {
  snapshot: Snapshot | null;
  /** The definition it was solved from (`Ref.def` of results sent back). */
  def?: pb.Definition;
}

/** What `Return` set. */
type Returned = { result: BuildResult } | { error: Error };

/** A BuildKit-style random id: 25 lowercase base-36 characters. */
export function newId(): string {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
  return [...randomBytes(25)].map((b) => alphabet[b % 36]).join('');
}

export class LLBBridgeSession {
  readonly #bridge: FrontendBridge;
  readonly #workers: GatewayWorker[];
  readonly #signal: AbortSignal | undefined;
  readonly #refs = new Map<string, HeldRef>();
  readonly #containers = new Map<string, InteractiveContainer>();
  /** Container ids whose NewContainer is in flight: taken before the container is made, so a second call with the id fails. */
  readonly #pendingContainers = new Set<string>();
  /** Counts `discard()` calls: a container made across one is released, never kept. */
  #discards = 0;
  #returned: Returned | undefined;
  readonly #done: Promise<void>;
  #resolveDone!: () => void;

  constructor(opts: LLBBridgeSessionOptions) {
    this.#bridge = opts.bridge;
    this.#workers = opts.workers ?? [];
    this.#signal = opts.signal;
    this.#done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  /** Resolves once the frontend called `Return`. */
  get returned(): Promise<void> {
    return this.#done;
  }

  /** Whether the frontend called `Return`. */
  get hasReturned(): boolean {
    return this.#returned !== undefined;
  }

  /**
   * What the frontend returned: its result, or the error it returned (thrown).
   * `INTERNAL` when it has not returned (BuildKit: "no result for incomplete build").
   */
  result(): BuildResult {
    const r = this.#returned;
    if (!r) throw new BktError('INTERNAL', 'the frontend ended without returning a result (no Return call)');
    if ('error' in r) throw r.error;
    return r.result;
  }

  /** Ids of the results the frontend holds now. */
  refIds(): string[] {
    return [...this.#refs.keys()];
  }

  /** Registers a snapshot as a result the frontend may reference (the ids of a failed step's trees). */
  hold(snapshot: Snapshot | null, def?: pb.Definition): string {
    const id = newId();
    this.#refs.set(id, { snapshot, ...(def ? { def } : {}) });
    return id;
  }

  /** Releases the frontend's containers and forgets its refs (the build releases their snapshots when it ends). */
  async discard(): Promise<void> {
    this.#discards++;
    const containers = [...this.#containers.values()];
    this.#containers.clear();
    await Promise.allSettled(containers.map((c) => c.release()));
    this.#refs.clear();
  }

  #ref(id: string, call: string): HeldRef {
    const held = this.#refs.get(id);
    if (!held) throw new BktError('NOT_FOUND', `${call}: no result with ref id "${id}" (never returned by Solve, or released)`, { attribute: 'Ref' });
    return held;
  }

  /** New work (solves, containers) stops once the session's signal aborts; reading what was solved does not. */
  #live(call: string): void {
    if (this.#signal?.aborted) throw new BktError('CANCELLED', `${call}: the build was cancelled`);
  }

  // -------------------------------------------------------------------------
  // The RPCs, as plain async functions of their messages.

  async ping(): Promise<gw.PongResponse> {
    return {
      FrontendAPICaps: caps(FRONTEND_CAPS, this.#bridge.newContainer ? [] : ['gateway.exec']),
      LLBCaps: caps(LLB_CAPS, []),
      Workers: this.#workers.map(workerRecord),
    };
  }

  async resolveImageConfig(req: gw.ResolveImageConfigRequest): Promise<gw.ResolveImageConfigResponse> {
    this.#live('ResolveImageConfig');
    if (!this.#bridge.resolveImageConfig) throw new BktError('UNIMPLEMENTED', 'ResolveImageConfig: this build resolves no image configs');
    if (req.ResolverType !== 0) {
      throw new BktError('UNIMPLEMENTED', `ResolveImageConfig ${req.Ref}: resolver type ${req.ResolverType} (only 0, registry images, is supported)`, {
        attribute: 'ResolverType',
      });
    }
    const r = await this.#bridge.resolveImageConfig(req.Ref, {
      ...(req.Platform ? { platform: platformOf(req.Platform) } : {}),
      ...(req.ResolveMode ? { resolveMode: req.ResolveMode } : {}),
    });
    return { Digest: r.digest, Config: Buffer.from(r.config) };
  }

  async solve(req: gw.SolveRequest): Promise<gw.SolveResponse> {
    this.#live('Solve');
    if (req.Final) throw new BktError('UNIMPLEMENTED', 'Solve: Final (inline return, removed from BuildKit) is not supported; use Return', { attribute: 'Final' });
    // Refused rather than ignored: the frontend asked for sources to be denied or converted.
    if (req.SourcePolicies.length > 0) {
      throw new BktError('UNIMPLEMENTED', "Solve: SourcePolicies from a frontend are not supported (the build's own source policy applies to every source)", { attribute: 'SourcePolicies' });
    }
    let result: BuildResult;
    let def: pb.Definition | undefined;
    try {
      if (req.Frontend) {
        if (req.Definition) throw new BktError('INVALID_ARGUMENT', 'Solve: a request takes a Definition or a Frontend, not both', { attribute: 'Frontend' });
        const inputs: Record<string, Uint8Array> = {};
        for (const [name, d] of Object.entries(req.FrontendInputs)) inputs[name] = pb.Definition.encode(d).finish();
        result = await this.#bridge.solveFrontend(req.Frontend, { ...req.FrontendOpt }, inputs);
      } else if (req.Definition && req.Definition.def.length > 0) {
        def = req.Definition;
        result = await this.#bridge.solve(pb.Definition.encode(req.Definition).finish());
      } else {
        // An empty definition is an empty result (BuildKit returns a nil ref).
        result = { ref: null, metadata: {} };
      }
    } catch (err) {
      throw this.#withDetails(err);
    }
    const res = this.#resultMessage(result, def);
    if (!req.allowResultReturn) {
      if (result.refs) throw new BktError('INVALID_ARGUMENT', 'Solve: the result has several refs; the client must allow result return (allowResultReturn)');
      const id = res.result?.$case === 'ref' ? res.result.value.id : '';
      return { ref: id, result: undefined };
    }
    // As BuildKit: Ref messages only for a client that allows them (allowResultArrayRef), else the ids alone.
    if (!req.allowResultArrayRef) {
      if (res.result?.$case === 'ref') res.result = { $case: 'refDeprecated', value: res.result.value.id };
      else if (res.result?.$case === 'refs') res.result = { $case: 'refsDeprecated', value: { refs: Object.fromEntries(Object.entries(res.result.value.refs).map(([k, r]) => [k, r.id])) } };
    }
    return { ref: '', result: res };
  }

  /** A solve error with the typed details a client acts on: a failed exec step's inputs and mounts become refs of this session. */
  #withDetails(err: unknown): unknown {
    const failed = failedExecOf(err);
    if (!failed || !(err instanceof BktError)) return err;
    const inputIDs = failed.inputs.map((s) => this.hold(s));
    const mountIDs = failed.mounts.map((s) => (s ? this.hold(s) : ''));
    const detail: ErrorDetail = solveErrorDetail({ inputIDs, mountIDs, op: failed.op as pb.ExecOp, opDigest: failed.opDigest, platform: failed.platform });
    return withErrorDetails(err, [detail]);
  }

  #resultMessage(result: BuildResult, def: pb.Definition | undefined): gw.Result {
    const metadata: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(result.metadata)) metadata[k] = Buffer.from(v);
    if (result.refs) {
      const refs: Record<string, gw.Ref> = {};
      for (const [k, s] of Object.entries(result.refs)) refs[k] = { id: this.hold(s), def: undefined };
      return { result: { $case: 'refs', value: { refs } }, metadata, attestations: {} };
    }
    const id = this.hold(result.ref, def);
    return { result: { $case: 'ref', value: { id, def } }, metadata, attestations: {} };
  }

  async readFile(req: gw.ReadFileRequest): Promise<gw.ReadFileResponse> {
    const held = this.#ref(req.Ref, `ReadFile ${req.FilePath}`);
    const range = req.Range ? { offset: req.Range.Offset, ...(req.Range.Length > 0 ? { length: req.Range.Length } : {}) } : undefined;
    return { Data: Buffer.from(await this.#bridge.readFile(held.snapshot, req.FilePath, range)) };
  }

  async readDir(req: gw.ReadDirRequest): Promise<gw.ReadDirResponse> {
    const held = this.#ref(req.Ref, `ReadDir ${req.DirPath}`);
    const entries = await this.#bridge.readDir(held.snapshot, req.DirPath, req.IncludePattern || undefined);
    return { entries: entries.map(wireStat) };
  }

  async statFile(req: gw.StatFileRequest): Promise<gw.StatFileResponse> {
    const held = this.#ref(req.Ref, `StatFile ${req.Path}`);
    return { stat: wireStat(await this.#bridge.statFile(held.snapshot, req.Path)) };
  }

  /** Results are solved when Solve returns, so evaluating one only checks that it exists. */
  async evaluate(req: gw.EvaluateRequest): Promise<gw.EvaluateResponse> {
    this.#ref(req.Ref, 'Evaluate');
    return {};
  }

  async inputs(): Promise<gw.InputsResponse> {
    const Definitions: Record<string, pb.Definition> = {};
    for (const [name, bytes] of Object.entries(this.#bridge.inputs ?? {})) Definitions[name] = pb.Definition.decode(bytes);
    return { Definitions };
  }

  async warn(req: gw.WarnRequest): Promise<gw.WarnResponse> {
    if (!/^sha256:[0-9a-f]{64}$/.test(req.digest)) throw new BktError('INVALID_ARGUMENT', `Warn: "${req.digest}" is not a vertex digest`, { attribute: 'digest' });
    const ranges = req.ranges.map((r) => ({ start: { line: r.start?.line ?? 0, character: r.start?.character ?? 0 }, end: { line: r.end?.line ?? 0, character: r.end?.character ?? 0 } }));
    this.#bridge.warn(
      req.digest as `sha256:${string}`,
      Buffer.from(req.short).toString(),
      req.detail.map((d) => Buffer.from(d).toString()),
      { ...(req.url ? { url: req.url } : {}), ...(ranges.length ? { ranges } : {}), level: req.level || 1 },
    );
    return {};
  }

  async return(req: gw.ReturnRequest): Promise<gw.ReturnResponse> {
    if (this.#returned) throw new BktError('INVALID_ARGUMENT', 'Return: the result is already set (Return called twice)');
    if (!req.result && (!req.error || req.error.code === 0)) throw new BktError('INVALID_ARGUMENT', 'Return: the request has neither a result nor an error');
    if (req.error && req.error.code !== 0) {
      this.#returned = { error: bktErrorOfStatus(req.error, 'the frontend returned an error') };
    } else {
      this.#returned = { result: await this.#buildResult(req.result!) };
    }
    this.#resolveDone();
    return {};
  }

  /** A returned `Result` as the build's result: its refs by id (or solved from their definitions), its metadata. */
  async #buildResult(res: gw.Result): Promise<BuildResult> {
    const metadata: Record<string, Uint8Array> = {};
    for (const [k, v] of Object.entries(res.metadata)) metadata[k] = new Uint8Array(v);
    const snapshotOf = async (ref: gw.Ref | undefined, where: string): Promise<Snapshot | null> => {
      if (!ref) return null;
      if (ref.id) return this.#ref(ref.id, `Return (${where})`).snapshot;
      if (ref.def && ref.def.def.length > 0) return (await this.#bridge.solve(pb.Definition.encode(ref.def).finish())).ref;
      return null;
    };
    switch (res.result?.$case) {
      case 'ref':
        return { ref: await snapshotOf(res.result.value, 'ref'), metadata };
      case 'refs': {
        const refs: Record<string, Snapshot | null> = {};
        for (const [k, r] of Object.entries(res.result.value.refs)) refs[k] = await snapshotOf(r, `refs[${k}]`);
        return { ref: null, refs, metadata };
      }
      case 'refDeprecated':
        return { ref: res.result.value ? this.#ref(res.result.value, 'Return').snapshot : null, metadata };
      case 'refsDeprecated': {
        const refs: Record<string, Snapshot | null> = {};
        for (const [k, id] of Object.entries(res.result.value.refs)) refs[k] = id ? this.#ref(id, `Return (refs[${k}])`).snapshot : null;
        return { ref: null, refs, metadata };
      }
      default:
        return { ref: null, metadata };
    }
  }

  // -------------------------------------------------------------------------
  // Containers: through the bridge's container capability.

  async newContainer(req: gw.NewContainerRequest): Promise<gw.NewContainerResponse> {
    this.#live('NewContainer');
    if (!this.#bridge.newContainer) {
      throw new BktError('UNIMPLEMENTED', 'NewContainer: no registered exec executor makes containers (add @bkt/worker-runc to the plugins)');
    }
    if (!req.ContainerID) throw new BktError('INVALID_ARGUMENT', 'NewContainer: ContainerID is empty', { attribute: 'ContainerID' });
    const id = req.ContainerID;
    if (this.#containers.has(id) || this.#pendingContainers.has(id)) {
      throw new BktError('INVALID_ARGUMENT', `NewContainer: container "${id}" exists already`, { attribute: 'ContainerID' });
    }
    // Each mount's ResultID names a ref of this session; the mounts read them as inputs by index.
    const inputs: { snapshot: Snapshot | null }[] = [];
    const mounts: pb.Mount[] = req.Mounts.map((m) => {
      if (!m.resultID) return { ...m, input: -1 };
      inputs.push({ snapshot: this.#ref(m.resultID, `NewContainer mount ${m.dest}`).snapshot });
      return { ...m, input: inputs.length - 1 };
    });
    const network = req.Network === pb.NetMode.HOST ? 'host' : req.Network === pb.NetMode.NONE ? 'none' : 'sandbox';
    const discards = this.#discards;
    this.#pendingContainers.add(id);
    let container: InteractiveContainer;
    try {
      container = await this.#bridge.newContainer({
        mounts,
        inputs,
        network,
        extraHosts: req.extraHosts.map((h) => ({ host: h.Host, ip: h.IP })),
        ...(req.platform ? { platform: platformOf(req.platform) } : {}),
        ...(req.constraints?.filter.length ? { constraints: req.constraints.filter } : {}),
      });
    } finally {
      this.#pendingContainers.delete(id);
    }
    // The session ended (discarded, or its build cancelled) while the container was made: nobody could release it.
    if (this.#discards !== discards || this.#signal?.aborted) {
      await container.release().catch(() => undefined);
      throw new BktError('CANCELLED', `NewContainer: the session of container "${id}" ended while it was made`, { attribute: 'ContainerID' });
    }
    this.#containers.set(id, container);
    return {};
  }

  async releaseContainer(req: gw.ReleaseContainerRequest): Promise<gw.ReleaseContainerResponse> {
    const container = this.#containers.get(req.ContainerID);
    if (!container) throw new BktError('NOT_FOUND', `ReleaseContainer: no container "${req.ContainerID}"`, { attribute: 'ContainerID' });
    this.#containers.delete(req.ContainerID);
    await container.release();
    return {};
  }

  /**
   * ExecProcess: a stream of ExecMessages, each naming its process. `Init`
   * starts one (Started, then File output, Exit, Done), `File` fd 0 feeds
   * its stdin, `Resize` and `Signal` reach it.
   */
  execProcess(send: (m: gw.ExecMessage) => void): { receive(m: gw.ExecMessage): Promise<void>; close(): void } {
    const procs = new Map<string, { stdin: PassThrough; proc?: ContainerProcess; starting: Promise<void> }>();
    const sendFd = (id: string, fd: number, data: Uint8Array) => send({ ProcessID: id, Input: { $case: 'File', value: { Fd: fd, EOF: false, Data: Buffer.from(data) } } });
    return {
      receive: async (m) => {
        const id = m.ProcessID;
        switch (m.Input?.$case) {
          case 'Init': {
            const init = m.Input.value;
            if (procs.has(id)) throw new BktError('INVALID_ARGUMENT', `ExecProcess: process "${id}" exists already`, { attribute: 'ProcessID' });
            const container = this.#containers.get(init.ContainerID);
            if (!container) throw new BktError('NOT_FOUND', `ExecProcess: no container "${init.ContainerID}"`, { attribute: 'ContainerID' });
            const meta = init.Meta;
            if (!meta || meta.args.length === 0) throw new BktError('INVALID_ARGUMENT', `ExecProcess ${id}: Meta.args is empty`, { attribute: 'Meta.args' });
            const stdin = new PassThrough();
            const fds = new Set(init.Fds);
            const entry: { stdin: PassThrough; proc?: ContainerProcess; starting: Promise<void> } = { stdin, starting: Promise.resolve() };
            procs.set(id, entry);
            entry.starting = (async () => {
              const proc = await container.start(
                {
                  args: meta.args,
                  env: meta.env,
                  cwd: meta.cwd || '/',
                  ...(meta.user ? { user: meta.user } : {}),
                  tty: init.Tty,
                  security: init.Security === pb.SecurityMode.INSECURE ? 'insecure' : 'sandbox',
                },
                {
                  ...(fds.has(0) ? { stdin: stdin as Readable } : {}),
                  stdout: (d) => (fds.has(1) || init.Tty ? sendFd(id, 1, d) : undefined),
                  stderr: (d) => (fds.has(2) ? sendFd(id, 2, d) : undefined),
                },
              );
              entry.proc = proc;
              send({ ProcessID: id, Input: { $case: 'Started', value: {} } });
              void proc.wait().then(
                (code) => {
                  send({ ProcessID: id, Input: { $case: 'Exit', value: { Code: code, Error: undefined } } });
                  send({ ProcessID: id, Input: { $case: 'Done', value: {} } });
                  procs.delete(id);
                },
                (err: unknown) => {
                  send({ ProcessID: id, Input: { $case: 'Exit', value: { Code: 255, Error: statusMessage(err) } } });
                  send({ ProcessID: id, Input: { $case: 'Done', value: {} } });
                  procs.delete(id);
                },
              );
            })();
            try {
              await entry.starting;
            } catch (err) {
              procs.delete(id);
              send({ ProcessID: id, Input: { $case: 'Exit', value: { Code: 255, Error: statusMessage(err) } } });
              send({ ProcessID: id, Input: { $case: 'Done', value: {} } });
            }
            return;
          }
          case 'File': {
            const p = procs.get(id);
            if (!p) return;
            if (m.Input.value.Data.length > 0) p.stdin.write(m.Input.value.Data);
            if (m.Input.value.EOF) p.stdin.end();
            return;
          }
          case 'Resize': {
            const p = procs.get(id);
            await p?.starting;
            await p?.proc?.resize({ rows: m.Input.value.Rows, cols: m.Input.value.Cols });
            return;
          }
          case 'Signal': {
            const p = procs.get(id);
            await p?.starting;
            await p?.proc?.signal(m.Input.value.Name);
            return;
          }
          default:
            throw new BktError('INVALID_ARGUMENT', `ExecProcess: unexpected message ${m.Input?.$case ?? 'none'} from the client`);
        }
      },
      close: () => {
        for (const p of procs.values()) p.stdin.end();
      },
    };
  }
}

function caps(ids: readonly string[], disabled: readonly string[]): apicaps.APICap[] {
  return ids.map((ID) => ({
    ID,
    Enabled: !disabled.includes(ID),
    Deprecated: false,
    DisabledReason: disabled.includes(ID) ? 'unsupported' : '',
    DisabledReasonMsg: disabled.includes(ID) ? `${ID} is not available in this build` : '',
    DisabledAlternative: '',
  }));
}

function workerRecord(w: GatewayWorker): types.WorkerRecord {
  return {
    ID: w.id,
    Labels: w.labels,
    platforms: w.platforms.map((p) => ({ OS: p.os, Architecture: p.architecture, Variant: p.variant ?? '', OSVersion: p.osVersion ?? '', OSFeatures: p.osFeatures ?? [] })),
    GCPolicy: [],
    BuildkitVersion: undefined,
  };
}

export function platformOf(p: pb.Platform): Platform {
  return {
    os: p.OS,
    architecture: p.Architecture,
    ...(p.Variant ? { variant: p.Variant } : {}),
    ...(p.OSVersion ? { osVersion: p.OSVersion } : {}),
    ...(p.OSFeatures.length ? { osFeatures: p.OSFeatures } : {}),
  };
}

function wireStat(e: FileStat) {
  return {
    path: e.path,
    mode: goModeOf(e.mode),
    uid: e.uid,
    gid: e.gid,
    size: e.size,
    modTime: Math.round(e.mtimeMs * 1e6),
    linkname: e.linkname ?? '',
    devmajor: e.devmajor ?? 0,
    devminor: e.devminor ?? 0,
    xattrs: {},
  };
}

/** An error as a google.rpc.Status message (ExitMessage.Error), with its gRPC code. */
function statusMessage(err: unknown) {
  const message = err instanceof Error ? err.message : String(err);
  return { code: grpcStatusOf(err).code ?? 2, message, details: [] };
}

