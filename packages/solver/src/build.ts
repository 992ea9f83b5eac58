/**
 * One build: loads definitions, computes cache keys, runs what the cache does
 * not hold, and reports progress. Runs of identical vertices are shared with
 * the other builds of the same solver through `Engine.jobs`.
 *
 * Cache keys (see README): a vertex's fast key is
 * sha256(["op", digest, [[input canonical key, output index]…]]); where the
 * op executor names `contentSelectors` for an input, the slow key replaces
 * that input's entry with the content checksums of the selected paths. The
 * *canonical* key (slow when the op has one, else fast) is what downstream
 * keys are built from, so a change in an unread file stops at the copy.
 * A source's key is sha256(["source", scheme, SourceInstance.cacheKey().key]).
 */
import { createHash } from 'node:crypto';
import * as pb from '@bkt/api/pb';
import {
  BktError,
  failedExecOf,
  isBktError,
  isCacheMountStore,
  Pacer,
  type Bkt,
  type BuildContext,
  type BuildResult,
  type BuildScope,
  type CacheChain,
  type CacheChainRecord,
  type CacheImport,
  type CacheMountStore,
  type ContentSelector,
  type Digest,
  type FailedExec,
  type ImportedCacheRecord,
  type Mounted,
  type OpEnvelope,
  type OpExecutor,
  type OpKind,
  type ProgressEvent,
  type ProgressWriter,
  type Snapshot,
  type SourceIdentifier,
  type SourceInstance,
  type VertexEvent,
} from '@bkt/core';
import { checksum } from '@bkt/fsutil';
import { loadDefinition, type LoadedDefinition, type Vertex } from './definition.js';
import { cancelled, type Pool } from './pool.js';
import { BuildProgress, CANCELED_ERROR, vertexWriter, type Emit } from './progress.js';
import type { SourcePolicy } from './api.js';
import { applySourcePolicy } from './source-policy.js';
import { digestText, type StepKey } from './explain.js';
import type { CacheRecord } from '@bkt/store';
import type { ScopedSnapshotter, Store } from '@bkt/store';

/** What the builds of one solver share. */
export interface Engine {
  readonly bkt: Bkt;
  readonly store: Store;
  readonly pool: Pool;
  /** Runs in flight, by canonical cache key. */
  readonly jobs: Map<string, Job>;
}

/** One execution of a vertex, awaited by every build that needs it; aborted when all of them give up. */
export class Job {
  readonly controller = new AbortController();
  /** Progress sinks of the builds waiting for this run. */
  readonly sinks = new Set<Emit>();
  #waiters = 0;
  promise!: Promise<(Snapshot | null)[]>;

  async join(signal: AbortSignal, emit: Emit): Promise<(Snapshot | null)[]> {
    this.#waiters++;
    this.sinks.add(emit);
    let onAbort!: () => void;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => {
        this.sinks.delete(emit);
        if (--this.#waiters === 0) this.controller.abort(signal.reason);
        reject(cancelled(signal));
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([this.promise, aborted]);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

export interface BuildOptions {
  /** The build's scope: what every backend context of the build carries. */
  scope: BuildScope;
  noCache: boolean;
  onProgress?: (event: ProgressEvent) => void;
  signal?: AbortSignal;
  frontend?: string;
  frontendAttrs: Record<string, string>;
  /** The build's own source policy, applied to every definition it loads. */
  sourcePolicy?: SourcePolicy;
}

interface KeyInfo {
  /** Keys a new result is recorded under: the fast key, and the slow key when there is one. */
  keys: string[];
  canonical: string;
  /** A cache record found for this vertex, and the key it was found under. */
  record?: CacheRecord;
  recordKey?: string;
  /** Results an imported cache holds for the key (one per output), when the store has none. */
  imported?: ImportedCacheRecord[];
  source?: SourceInstance;
}

/**
 * The cache key of output `index` of a vertex whose key is `key` (a record
 * of an exported cache): the key itself for the first output.
 */
export function outputKey(key: string, index: number): Digest {
  return (index === 0 ? key : hashKey(['output', key, index])) as Digest;
}

interface VertexState {
  key?: Promise<KeyInfo>;
  /** The plaintext of the key, for explanations (`explain.ts`). */
  plain?: Pick<StepKey, 'inputs' | 'source' | 'exec' | 'content'>;
  result?: Promise<(Snapshot | null)[]>;
  sourceId?: SourceIdentifier;
  reported: boolean;
  cached: boolean;
}

/** The cache mounts (without a source input) the exec steps among `vertices` use, by cache ID, sorted. */
function cacheMountIds(vertices: Iterable<Vertex>): string[] {
  const ids = new Set<string>();
  for (const v of vertices) {
    if (v.op.op?.$case !== 'exec') continue;
    for (const m of v.op.op.value.mounts) {
      if (m.mountType === pb.MountType.CACHE && m.input < 0) ids.add(m.cacheOpt?.ID || m.dest);
    }
  }
  return [...ids].sort();
}

/** The cache key marking that the store holds results imported over source key `key` without the source (`#markImportedOver`). */
function importedOverKey(key: string): string {
  return hashKey(['imported-over', key]);
}

/** A view mounted once for several users of one build (see `Build.#sharedView`). */
interface SharedView {
  mounted: Promise<Mounted>;
  users: number;
}

function hashKey(parts: unknown): string {
  return `sha256:${createHash('sha256').update(JSON.stringify(parts)).digest('hex')}`;
}

export class Build {
  readonly controller = new AbortController();
  readonly progress: BuildProgress;
  readonly #states = new Map<Digest, VertexState>();
  readonly #vertexOf = new Map<Digest, Vertex>();
  readonly #held: Snapshot[] = [];
  /** Cache imports (`--cache-from`), matched in order after the store's own records. */
  readonly #imports: CacheImport[] = [];
  /** The snapshotter backends get: what they create stays in use until the build finishes. */
  readonly #snapshots: ScopedSnapshotter;
  /** Paces the build's long synchronous stretches (loading, cache keys) so a cancellation stops them. */
  readonly #pacer: Pacer;
  #firstError: Error | undefined;
  /** Settles once the build's cache imports are added (`importsFrom`); never rejects. */
  #importsReady: Promise<void> = Promise.resolve();
  /** Restores cache mounts the imports carry (set by the solver when one does and the exec executor keeps cache mounts). */
  #restoreCacheMounts: ((ids: string[]) => Promise<void>) | undefined;
  /** The restorations asked, by cache mount ID: each once per build, before any step using it runs. */
  readonly #restoring = new Map<string, Promise<void>>();
  /**
   * The state every failed exec step of this build kept for debugging,
   * whichever error ends the build (steps failing in parallel, a frontend
   * that handled a failed solve): dropped by `dropFailedExecs`.
   */
  readonly #failedExecs = new Set<FailedExec>();
  #failedExecsDropped = false;
  /** Vertices whose upstream sources `#markImportedOver` has marked in this build. */
  readonly #markWalked = new Set<Digest>();
  /** Read-only views shared by content checksums and file ops (see `#sharedView`), by snapshot id. */
  readonly #views = new Map<string, SharedView>();
  #viewsClosed = false;

  constructor(
    private readonly engine: Engine,
    readonly opts: BuildOptions,
  ) {
    this.progress = new BuildProgress(engine.bkt.hooks, opts.onProgress);
    this.#snapshots = engine.store.snapshotter.scoped();
    this.#pacer = new Pacer(this.signal);
    const outer = opts.signal;
    if (outer) {
      const onAbort = () => this.controller.abort(new BktError('CANCELLED', `build ${opts.scope.buildId} cancelled`));
      if (outer.aborted) onAbort();
      else outer.addEventListener('abort', onAbort, { once: true });
    }
  }

  get buildId(): string {
    return this.opts.scope.buildId;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get stats(): { vertices: number; cached: number } {
    let cached = 0;
    for (const s of this.#states.values()) if (s.cached) cached++;
    return { vertices: this.#states.size, cached };
  }

  /** The first error that failed the build (the cause of the cancellations that followed). */
  get firstError(): Error | undefined {
    return this.#firstError;
  }

  /** A context for backends; `progress` decides which vertex their reports go to. */
  context(progress: ProgressWriter, signal: AbortSignal = this.signal, vertex?: { digest: Digest; name: string }): BuildContext {
    const scope = this.opts.scope;
    return {
      buildId: scope.buildId,
      client: scope.client,
      entitlements: scope.entitlements,
      secrets: scope.secrets,
      ssh: scope.ssh,
      onFinish: scope.onFinish,
      root: this.engine.store.root,
      snapshotter: this.#snapshots.snapshotter,
      content: this.engine.store.content,
      records: this.engine.store.records,
      signal,
      progress,
      ...(vertex ? { vertex } : {}),
    };
  }

  /**
   * Runs `beforeSolve`, applies the build's source policy, decodes and
   * validates a definition, asks the `sourcePolicy` hook of every source and
   * checks every op has a backend. Writes nothing.
   */
  async load(bytes: Uint8Array): Promise<LoadedDefinition> {
    const hooks = this.engine.bkt.hooks;
    let input = hooks.beforeSolve.isUsed()
      ? await hooks.beforeSolve.promise(bytes, {
          buildId: this.buildId,
          frontend: this.opts.frontend,
          frontendAttrs: this.opts.frontendAttrs,
        })
      : bytes;
    if (this.opts.sourcePolicy) input = await applySourcePolicy(input, this.opts.sourcePolicy);
    await this.#pacer.pause();
    const def = loadDefinition(input);
    for (const v of def.vertices) {
      if (this.#pacer.due()) await this.#pacer.pause();
      const st = this.#state(v);
      if (v.kind === 'source') st.sourceId ??= await this.#identify(v);
      else if (!this.engine.bkt.registries.opExecutors.has(v.kind)) throw missingExecutor(v);
      if (v.op.op?.$case === 'exec') this.#checkEntitlements(v, v.op.op.value);
    }
    await this.#importsReady;
    if (this.#restoreCacheMounts) {
      // Only the cache mounts this definition's exec steps declare come from the imports, before any step runs.
      const ids = cacheMountIds(def.vertices);
      const fresh = ids.filter((id) => !this.#restoring.has(id));
      if (fresh.length > 0) {
        const p = this.#restoreCacheMounts(fresh);
        p.catch(() => undefined);
        for (const id of fresh) this.#restoring.set(id, p);
      }
      await Promise.all(ids.map((id) => this.#restoring.get(id)));
    }
    return def;
  }

  /** Makes `restore` restore the cache mounts the build's definitions declare, from its imports (see `load`). */
  restoreCacheMountsWith(restore: (ids: string[]) => Promise<void>): void {
    this.#restoreCacheMounts = restore;
  }

  /** Solves a loaded definition; returns the result snapshot (null: empty result). */
  async solve(def: LoadedDefinition): Promise<Snapshot | null> {
    if (!def.result) return null;
    try {
      // Keys start inputs first, so no key computation waits on an input whose
      // computation has not started: starting from the result would recurse
      // through the whole graph at once (and overflow the stack on deep graphs).
      // A source the cache lacks starts its work (an image's pull and unpack) as
      // soon as its key is known, while other vertices compute theirs (a local
      // context's sync and checksums): see `#prefetchSource`.
      for (const v of def.vertices) {
        if (this.#pacer.due()) await this.#pacer.pause();
        if (v.kind === 'source') this.#prefetchSource(v);
        else this.#key(v).catch(() => undefined);
      }
      const outs = await this.#result(def.result.vertex);
      // Vertices the result never needed to materialize were satisfied by the cache.
      for (const v of def.vertices) {
        const st = this.#state(v);
        if (!st.reported) this.#reportCached(v, st);
      }
      return outs[def.result.index];
    } catch (err) {
      throw this.#firstError ?? err;
    }
  }

  /**
   * The error a step that stopped with `err` is reported with: its own while
   * the build is live; once the build has failed or been cancelled, a step
   * stopping is a consequence and is CANCELED (`CANCELED_ERROR`), so only the
   * step that failed shows an error.
   */
  stepError(err: Error): string {
    return this.signal.aborted ? CANCELED_ERROR : err.message;
  }

  /** Fails the build: records the first error and cancels everything still running for it. */
  fail(err: Error): void {
    this.#firstError ??= err;
    if (!this.signal.aborted) this.controller.abort(err);
  }

  /** The plaintexts of the keys the build computed, for explanations; `ran`: the step ran (not from a cache). */
  async stepKeys(): Promise<StepKey[]> {
    const out: StepKey[] = [];
    for (const [digest, st] of this.#states) {
      const v = this.#vertexOf.get(digest);
      const k = st.key ? await st.key.catch(() => undefined) : undefined;
      if (!v || !k || !st.plain) continue;
      out.push({ digest, name: v.name, kind: v.kind, key: k.canonical, ran: st.reported && !st.cached, ...st.plain });
    }
    return out;
  }

  /**
   * Removes what the build's failed exec steps kept (their writable mounts
   * as the processes left them) once nothing can use it any more: called
   * when the build is over (after its debug session, its frontends, its
   * `finish`). A step failing later has its state removed at once. Kept
   * only what something else took (a record, a build using it).
   */
  async dropFailedExecs(): Promise<void> {
    this.#failedExecsDropped = true;
    const all = [...this.#failedExecs];
    this.#failedExecs.clear();
    await this.#removeKept(all);
  }

  async #keepFailedExec(failed: FailedExec): Promise<void> {
    if (this.#failedExecsDropped) await this.#removeKept([failed]);
    else this.#failedExecs.add(failed);
  }

  async #removeKept(failed: FailedExec[]): Promise<void> {
    const ids = failed.flatMap((f) => f.mounts.flatMap((s) => (s ? [s.id] : [])));
    if (ids.length === 0) return;
    await this.engine.store.snapshotter.removeUnused(ids, this.engine.store.liveness()).catch(() => undefined);
  }

  /** Adds a cache import whose records keys are matched against (after the store's). */
  addImport(imp: CacheImport): void {
    this.#imports.push(imp);
  }

  /**
   * Cache keys and definitions wait for `loading` (which adds the build's
   * cache imports) while the rest of the build starts (a frontend); its
   * failure fails the build.
   */
  importsFrom(loading: Promise<void>): void {
    this.#importsReady = loading.catch((err: Error) => this.fail(err));
  }

  /**
   * A read-only view of `snapshot` shared within this build: a content
   * checksum and the file op reading the same input mount it once (each
   * mount and unmount is a process). The view stays mounted while any user
   * holds it and, for the build, until `closeViews()`.
   */
  async #sharedView(snapshot: Snapshot): Promise<Mounted> {
    if (this.#viewsClosed) return snapshot.mount();
    let view = this.#views.get(snapshot.id);
    if (!view) {
      // One reference is the build's own, dropped by closeViews().
      view = { mounted: snapshot.mount(), users: 1 };
      const made = view;
      this.#views.set(snapshot.id, made);
      made.mounted.catch(() => {
        if (this.#views.get(snapshot.id) === made) this.#views.delete(snapshot.id);
      });
    }
    view.users++;
    const held = view;
    let m: Mounted;
    try {
      m = await held.mounted;
    } catch (err) {
      held.users--;
      throw err;
    }
    let released = false;
    return {
      path: m.path,
      release: async () => {
        if (released) return;
        released = true;
        await this.#dropView(snapshot.id, held);
      },
    };
  }

  async #dropView(id: string, view: SharedView): Promise<void> {
    if (--view.users > 0) return;
    if (this.#views.get(id) === view) this.#views.delete(id);
    await (await view.mounted).release();
  }

  /** `snapshot` as a file op's input: its view is the build's shared one. */
  #withSharedView(snapshot: Snapshot): Snapshot {
    return { ...snapshot, mount: () => this.#sharedView(snapshot) };
  }

  /** Drops the build's reference to its shared views: each is unmounted once its last user releases it. */
  async closeViews(): Promise<void> {
    this.#viewsClosed = true;
    const views = [...this.#views];
    await Promise.all(views.map(([id, view]) => this.#dropView(id, view).catch(() => undefined)));
  }

  /** Releases the snapshots the build held in use. */
  finish(): void {
    for (const s of this.#held.splice(0)) this.engine.store.snapshotter.release(s.id);
    this.#snapshots.release();
  }

  // -------------------------------------------------------------------------

  #state(v: Vertex): VertexState {
    let st = this.#states.get(v.digest);
    if (!st) {
      st = { reported: false, cached: false };
      this.#states.set(v.digest, st);
      this.#vertexOf.set(v.digest, v);
    }
    return st;
  }

  /** As BuildKit: host networking and insecure mode need the client's entitlement. */
  #checkEntitlements(v: Vertex, exec: pb.ExecOp): void {
    const need = [
      ...(exec.network === pb.NetMode.HOST ? ['network.host'] : []),
      ...(exec.security === pb.SecurityMode.INSECURE ? ['security.insecure'] : []),
    ];
    for (const e of need) {
      if (!this.opts.scope.entitlements.has(e)) {
        throw new BktError('PERMISSION_DENIED', `${v.name}: needs entitlement ${e}, which the build did not grant (op ${v.digest}; pass --allow ${e})`, {
          opDigest: v.digest,
          attribute: e,
        });
      }
    }
  }

  async #identify(v: Vertex): Promise<SourceIdentifier> {
    const op = (v.op.op as { value: pb.SourceOp }).value;
    let identifier = op.identifier;
    let attrs: Record<string, string> = { ...op.attrs };
    const hooks = this.engine.bkt.hooks;
    if (hooks.sourcePolicy.isUsed()) {
      const decision = await hooks.sourcePolicy.promise({ identifier, attrs });
      if (decision?.action === 'deny') {
        throw new BktError('PERMISSION_DENIED', `source ${identifier} denied by source policy: ${decision.reason} (op ${v.digest})`, {
          opDigest: v.digest,
        });
      }
      if (decision?.action === 'convert') {
        identifier = decision.identifier;
        if (decision.attrs) attrs = { ...decision.attrs };
      }
    }
    const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(identifier);
    if (!m) {
      throw new BktError('INVALID_DEFINITION', `invalid LLB op ${v.digest}: source identifier "${identifier}" has no scheme (want scheme://…)`, {
        opDigest: v.digest,
      });
    }
    const [, scheme, ref] = m;
    const source = this.engine.bkt.registries.sources.get(scheme);
    if (!source) {
      const known = this.engine.bkt.registries.sources.keys().sort().join(', ') || 'none';
      throw new BktError('UNIMPLEMENTED', `no source for "${scheme}://" identifiers (op ${v.digest}, ${identifier}); registered schemes: ${known}`, {
        opDigest: v.digest,
      });
    }
    try {
      return source.identify(scheme, ref, attrs, v.platform);
    } catch (err) {
      throw vertexError(v, err);
    }
  }

  #key(v: Vertex): Promise<KeyInfo> {
    const st = this.#state(v);
    st.key ??= this.#computeKey(v, st).catch((err) => {
      const e = vertexError(v, err);
      // Its own failure (a source resolving, a checksum of what it reads) is shown on this step;
      // a failure of an input's key is the input's.
      if (e.details.opDigest === v.digest) this.#reportKeyFailure(v, e);
      this.fail(e);
      throw e;
    });
    return st.key;
  }

  /** Shows a step whose cache key could not be computed as failed: completes it when shown (a source resolving), else shows it started and failed. */
  #reportKeyFailure(v: Vertex, e: Error): void {
    if (this.progress.shown(v.digest)) {
      this.progress.failOpen(v.digest, this.stepError(e));
      return;
    }
    const started = new Date();
    const event: VertexEvent = { ...this.#vertexInfo(v), cached: false, started };
    this.progress.vertexStarted(event);
    this.progress.vertexDone({ ...event, completed: new Date(), error: this.stepError(e) });
  }

  async #computeKey(v: Vertex, st: VertexState): Promise<KeyInfo> {
    // Keys of a long chain resolve one after another in microtasks; pausing lets signals and I/O in.
    if (this.#pacer.due()) await this.#pacer.pause();
    await this.#importsReady;
    // A failed import failed the build: this step only stops.
    if (this.signal.aborted) throw new BktError('CANCELLED', `build ${this.buildId} cancelled`);
    const useCache = !this.opts.noCache && !v.metadata?.ignoreCache;
    const lookup = (key: string) => (useCache ? this.engine.store.db.getCache(key) : undefined);
    const imported = (key: string) => (useCache ? this.#lookupImports(key, v.outputs) : undefined);
    if (v.kind === 'source') {
      const ctx = this.context(this.#writer(v), this.signal, { digest: v.digest, name: v.name });
      const source = this.engine.bkt.registries.sources.require(st.sourceId!.scheme);
      const instance = await source.resolve(st.sourceId!, ctx);
      const { key: contentKey } = await instance.cacheKey(ctx);
      const key = hashKey(['source', st.sourceId!.scheme, contentKey]);
      st.plain = { inputs: [], source: { identifier: `${st.sourceId!.scheme}://${st.sourceId!.ref}`, key: contentKey } };
      const record = lookup(key);
      return { keys: [key], canonical: key, record, recordKey: key, ...(record ? {} : { imported: imported(key) }), source: instance };
    }
    const { executor, op } = this.#executor(v);
    const selectors = v.inputs.map((_, j) => executor.contentSelectors?.(op, j));
    // The slow key needs the results of the inputs read by content; start
    // those now rather than after every input key (which, in a chain of
    // copies from independent stages, would run the stages one by one).
    // With cache imports, an input's result may never be needed (this op's
    // fast key may be imported), so nothing runs before that is known.
    if (this.#imports.length === 0) {
      v.inputs.forEach((inp, j) => {
        if (selectors[j]?.length) this.#prefetch(inp.vertex);
      });
    }
    const inputKeys = await Promise.all(v.inputs.map((i) => this.#key(i.vertex)));
    st.plain = { inputs: v.inputs.map((inp, j) => ({ name: inp.vertex.name, key: inputKeys[j].canonical })), ...execPlain(v) };
    const fast = hashKey(['op', v.digest, v.inputs.map((inp, j) => [inputKeys[j].canonical, inp.index])]);
    const fastRecord = lookup(fast);
    if (fastRecord) return { keys: [fast], canonical: fastRecord.canonical, record: fastRecord, recordKey: fast };
    const fastImported = imported(fast);
    if (fastImported) return { keys: [fast], canonical: fastImported[0]?.canonical ?? fast, imported: fastImported };
    if (!selectors.some((s) => s && s.length > 0)) return { keys: [fast], canonical: fast };
    const parts = await Promise.all(
      v.inputs.map(async (inp, j) => {
        const sel = selectors[j];
        if (!sel || sel.length === 0) return [inputKeys[j].canonical, inp.index];
        const snapshot = (await this.#result(inp.vertex))[inp.index];
        return ['content', await this.#checksums(snapshot, sel)];
      }),
    );
    const slow = hashKey(['op', v.digest, parts]);
    st.plain.content = parts.flatMap((part, j) => (part[0] === 'content' ? [{ input: j, paths: selectors[j]!.map((sel) => sel.path), sums: part[1] as string[] }] : []));
    const record = lookup(slow);
    return { keys: [fast, slow], canonical: slow, record, recordKey: slow, ...(record ? {} : { imported: imported(slow) }) };
  }

  /**
   * The results the first import holding every output of key `key` has for
   * them, when their records agree on the canonical key (output i's is
   * output i of output 0's: one export's records, not a mix of several).
   */
  #lookupImports(key: string, outputs: number): ImportedCacheRecord[] | undefined {
    for (const imp of this.#imports) {
      const found: ImportedCacheRecord[] = [];
      for (let i = 0; i < outputs; i++) {
        const r = imp.lookup(outputKey(key, i));
        if (!r) break;
        found.push(r);
      }
      if (found.length === outputs && outputs > 0 && found.every((r, i) => r.canonical === outputKey(found[0].canonical, i))) return found;
    }
    return undefined;
  }

  /**
   * Starts computing `v`'s result ahead of need when the cache has no record
   * for it (so it has to run for whoever reads it). A cached result (the
   * store's or an import's) is left alone until someone needs it, so vertices
   * upstream of a hit stay untouched and an imported result is fetched only
   * when used; so is a source a cache import gave the store results over
   * (`#markImportedOver`). Failures surface through whoever awaits the result.
   */
  #prefetch(v: Vertex): void {
    this.#key(v).then(
      (k) => {
        const ahead = !k.record && !k.imported && !this.engine.store.db.getCache(importedOverKey(k.canonical));
        if (ahead && !this.signal.aborted) this.#result(v).catch(() => undefined);
      },
      () => undefined,
    );
  }

  /**
   * Starts a source's result (its snapshot: an image pulled and unpacked)
   * once its key is known, when neither the store nor an import holds it
   * and the build has no cache imports. Then the result is needed whatever
   * the cache says of the vertices reading it: each of their keys is made of
   * this source's key (or of the content read from it, which needs the result
   * anyway), so none of them can be in the store while the source is not.
   * A cached source is never started ahead (a warm build pulls nothing);
   * with imports, a consumer's key may be imported, so the source waits to
   * be asked; a source whose cache the build ignores (`--no-cache-filter`)
   * waits too, as a consumer's record may still stand for it; so does a
   * source a cache import gave the store results over (`#markImportedOver`:
   * those were recorded without it).
   */
  #prefetchSource(v: Vertex): void {
    this.#key(v).then(
      (k) => {
        const ahead =
          !k.record &&
          !k.imported &&
          this.#imports.length === 0 &&
          !v.metadata?.ignoreCache &&
          !this.engine.store.db.getCache(importedOverKey(k.canonical));
        if (ahead && !this.signal.aborted) this.#result(v).catch(() => undefined);
      },
      () => undefined,
    );
  }

  async #checksums(snapshot: Snapshot | null, selectors: ContentSelector[]): Promise<string[]> {
    if (!snapshot) return selectors.map(() => 'scratch');
    const mounted = await this.#sharedView(snapshot);
    try {
      const sums: string[] = [];
      // What the snapshot's maker knows of its files is not read again (a local source's synced files).
      const knownDigests = snapshot.contentDigests?.();
      for (const sel of selectors) sums.push(await checksum(mounted.path, sel, { knownDigests }));
      return sums;
    } finally {
      await mounted.release();
    }
  }

  /**
   * The executor of a vertex's kind and the op it is given: the one place ops
   * are unwrapped for executors (see `OpExecutor`). The op's platform goes
   * with it as the `OpEnvelope`.
   */
  #executor(v: Vertex): { executor: OpExecutor; op: OpPayload; envelope: OpEnvelope } {
    const registry = this.engine.bkt.registries.opExecutors;
    const executor = registry.get(v.kind);
    if (!executor) throw missingExecutor(v);
    return { executor, op: unwrapOp(v, executor.kind, registry.owner(v.kind)), envelope: v.platform ? { platform: v.platform } : {} };
  }

  #result(v: Vertex): Promise<(Snapshot | null)[]> {
    const st = this.#state(v);
    st.result ??= this.#computeResult(v, st);
    return st.result;
  }

  async #computeResult(v: Vertex, st: VertexState): Promise<(Snapshot | null)[]> {
    const k = await this.#key(v);
    if (k.record) {
      const outs = this.#hold(k.record);
      if (outs) {
        this.#reportCached(v, st);
        return outs;
      }
      // A record whose snapshot is gone is a miss; drop it.
      this.engine.store.db.deleteCache(k.recordKey!);
    }
    if (k.imported) return this.#loadImported(v, st, k, k.imported);
    return this.#run(v, st, k);
  }

  /**
   * An imported result: its layers are fetched and unpacked (only what the
   * store lacks), recorded under the vertex's keys as a run's result would be,
   * and the step shown cached.
   */
  async #loadImported(v: Vertex, st: VertexState, k: KeyInfo, imported: ImportedCacheRecord[]): Promise<(Snapshot | null)[]> {
    const ctx = this.context(this.#writer(v), this.signal, { digest: v.digest, name: v.name });
    let outs: (Snapshot | null)[];
    try {
      outs = await Promise.all(imported.map((r) => r.load(ctx)));
    } catch (err) {
      const e = vertexError(v, err);
      this.progress.failOpen(v.digest, this.stepError(e));
      this.fail(e);
      throw e;
    }
    for (const s of outs) {
      if (!s) continue;
      this.engine.store.snapshotter.acquire(s.id);
      this.#held.push(s);
    }
    this.engine.store.db.putCache(k.keys, { canonical: k.canonical, outputs: outs.map((s) => s?.id ?? null) });
    await this.#markImportedOver(v, outs);
    if (this.progress.shown(v.digest)) {
      st.reported = true;
      st.cached = true;
      this.progress.vertexDone({ ...this.#vertexInfo(v), cached: true, started: new Date(), completed: new Date() });
    } else this.#reportCached(v, st);
    return outs;
  }

  /**
   * Records, for each source upstream of `v` the store has no record of,
   * that the store now holds a result built over it (`v`'s imported
   * `outs`), so a later build does not start that source ahead of need
   * (`#prefetchSource`): the store holds `v` though not the source. The
   * mark is a cache key holding `v`'s first output snapshot, so it goes
   * when that snapshot is pruned.
   */
  async #markImportedOver(v: Vertex, outs: (Snapshot | null)[]): Promise<void> {
    // Iterative (deep graphs), each vertex once per build: a source marked over one result needs no other mark.
    const todo = [v];
    while (todo.length > 0) {
      for (const inp of todo.pop()!.inputs) {
        const w = inp.vertex;
        if (this.#markWalked.has(w.digest)) continue;
        this.#markWalked.add(w.digest);
        if (w.kind !== 'source') {
          todo.push(w);
          continue;
        }
        const k = await this.#states.get(w.digest)?.key?.catch(() => undefined);
        if (k && !this.engine.store.db.getCache(k.canonical)) {
          this.engine.store.db.putCache([importedOverKey(k.canonical)], { canonical: k.canonical, outputs: outs.slice(0, 1).map((s) => s?.id ?? null) });
        }
      }
    }
  }

  /**
   * The build's cache chain (see `CacheChain` of `@bkt/core`): a record per
   * vertex output and key the build computed, linked to its inputs' records;
   * `results` are the records whose snapshot is one of `result`'s.
   */
  async cacheChain(result: BuildResult): Promise<CacheChain> {
    const records: CacheChainRecord[] = [];
    const index = new Map<string, number>();
    const vertices = new Map<Digest, Vertex>();
    for (const [digest, st] of this.#states) {
      if (!st.key) continue;
      const info = await st.key.catch(() => undefined);
      if (!info) continue;
      const v = this.#vertexOf.get(digest);
      if (v) vertices.set(digest, v);
    }
    const keyOf = new Map<Digest, KeyInfo>();
    for (const [digest] of vertices) keyOf.set(digest, await this.#states.get(digest)!.key!);
    // Records first, links after: an input's record may come later in the map.
    for (const [digest, v] of vertices) {
      const k = keyOf.get(digest)!;
      const st = this.#states.get(digest)!;
      const keys = [...new Set([...k.keys, k.canonical])];
      const exportable = !(v.kind === 'source' && st.sourceId?.scheme === 'local');
      for (let out = 0; out < v.outputs; out++) {
        for (const key of keys) {
          const id = outputKey(key, out);
          if (index.has(id)) continue;
          index.set(id, records.length);
          records.push({
            key: id,
            vertex: { digest, name: v.name, output: out },
            inputs: [],
            exportable,
            result: () => this.#chainResult(v, st, k, out),
          });
        }
      }
    }
    for (const [digest, v] of vertices) {
      const k = keyOf.get(digest)!;
      const keys = [...new Set([...k.keys, k.canonical])];
      for (let out = 0; out < v.outputs; out++) {
        for (const key of keys) {
          const rec = records[index.get(outputKey(key, out))!];
          if (rec.vertex.digest !== digest) continue; // the same key reached through another vertex
          if (key !== k.canonical) rec.canonical = index.get(outputKey(k.canonical, out));
          // Links name the inputs' records; no selector: a key is matched by its digest alone
          // (it is made of its inputs' keys), and an export is the same whether the build ran or was cached.
          rec.inputs = v.inputs.map((inp) => {
            const ik = keyOf.get(inp.vertex.digest);
            const at = ik ? index.get(outputKey(ik.canonical, inp.index)) : undefined;
            return at === undefined ? [] : [{ record: at }];
          });
        }
      }
    }
    const results: number[] = [];
    const snapshots = [result.ref, ...Object.values(result.refs ?? {})].filter((s): s is Snapshot => !!s);
    for (const s of snapshots) {
      for (const [digest, v] of vertices) {
        const st = this.#states.get(digest)!;
        const outs = st.result ? await st.result.catch(() => undefined) : undefined;
        const out = outs?.findIndex((o) => o?.id === s.id) ?? -1;
        if (out < 0) continue;
        const at = index.get(outputKey(keyOf.get(digest)!.canonical, out));
        if (at !== undefined && !results.includes(at)) results.push(at);
      }
    }
    const ids = cacheMountIds(vertices.values());
    const store = this.engine.bkt.registries.opExecutors.get('exec');
    const cacheMounts = ids.length > 0 && isCacheMountStore(store) ? { cacheMounts: { ids, store } } : {};
    return { records, results, ...cacheMounts };
  }

  /** The exec executor when it keeps cache mounts (core's `CacheMountStore`), for cache imports that carry some. */
  get cacheMountStore(): CacheMountStore | undefined {
    const store = this.engine.bkt.registries.opExecutors.get('exec');
    return isCacheMountStore(store) ? store : undefined;
  }

  /** Output `out` of a vertex for a cache export: its result when the build made it, else the store's record of it. */
  async #chainResult(v: Vertex, st: VertexState, k: KeyInfo, out: number): Promise<Snapshot | null | undefined> {
    if (st.result) {
      const outs = await st.result.catch(() => undefined);
      return outs ? outs[out] : undefined;
    }
    const record = k.record ?? this.engine.store.db.getCache(k.canonical);
    if (!record) return undefined;
    const outs = this.#hold(record);
    return outs ? outs[out] : undefined;
  }

  /** Marks a record's snapshots in use; undefined when one of them is gone. */
  #hold(record: CacheRecord): (Snapshot | null)[] | undefined {
    const snapshotter = this.engine.store.snapshotter;
    const outs: (Snapshot | null)[] = [];
    for (const id of record.outputs) {
      if (id === null) {
        outs.push(null);
        continue;
      }
      const s = snapshotter.tryAcquire(id);
      if (!s) {
        for (const o of outs) if (o) snapshotter.release(o.id);
        return undefined;
      }
      outs.push(s);
    }
    const got = outs.filter((o): o is Snapshot => o !== null);
    this.#held.push(...got);
    this.engine.store.db.touch(got.map((s) => s.id));
    return outs;
  }

  async #run(v: Vertex, st: VertexState, k: KeyInfo): Promise<(Snapshot | null)[]> {
    const inputs = await Promise.all(
      v.inputs.map(async (inp) => {
        const snapshot = (await this.#result(inp.vertex))[inp.index] ?? null;
        // A file op reads its inputs through the views their content checksums mounted.
        return { snapshot: snapshot && v.kind === 'file' ? this.#withSharedView(snapshot) : snapshot };
      }),
    );
    if (this.signal.aborted) throw cancelled(this.signal);
    st.reported = true;
    const event: VertexEvent = { ...this.#vertexInfo(v), cached: false, started: new Date() };
    this.progress.vertexStarted(event);
    const jobs = this.engine.jobs;
    let job = jobs.get(k.canonical);
    // A run whose builds all gave up is being torn down: start a new one.
    if (!job || job.controller.signal.aborted) {
      const fresh = new Job();
      fresh.promise = this.#execute(v, k, inputs, fresh).finally(() => {
        if (jobs.get(k.canonical) === fresh) jobs.delete(k.canonical);
      });
      // Settled by the waiters; this keeps an abandoned run's rejection from going unhandled.
      fresh.promise.catch(() => undefined);
      jobs.set(k.canonical, fresh);
      job = fresh;
    }
    try {
      const outs = await job.join(this.signal, this.progress.emit);
      for (const s of outs) {
        if (!s) continue;
        this.engine.store.snapshotter.acquire(s.id);
        this.#held.push(s);
      }
      this.progress.vertexDone({ ...event, completed: new Date() });
      return outs;
    } catch (err) {
      const e = vertexError(v, err);
      this.progress.vertexDone({ ...event, completed: new Date(), error: this.stepError(e) });
      this.fail(e);
      throw e;
    }
  }

  async #execute(v: Vertex, k: KeyInfo, inputs: { snapshot: Snapshot | null }[], job: Job): Promise<(Snapshot | null)[]> {
    const signal = job.controller.signal;
    const ctx = this.context(vertexWriter(v.digest, job.sinks), signal, { digest: v.digest, name: v.name });
    const outs = await this.engine.pool
      .run(async () => {
        if (v.kind === 'source') return [await k.source!.snapshot(ctx)];
        const { executor, op, envelope } = this.#executor(v);
        return executor.run(op, inputs, ctx, envelope);
      }, signal)
      .catch(async (err: unknown) => {
        // The step's kept state is this build's (its snapshotter made it), whoever else waited for the run.
        const failed = failedExecOf(err);
        if (failed) await this.#keepFailedExec(failed);
        throw err;
      });
    if (outs.length !== v.outputs) {
      throw new BktError('INTERNAL', `${v.kind} executor returned ${outs.length} outputs for op ${v.digest}, which has ${v.outputs}`, {
        opDigest: v.digest,
      });
    }
    this.engine.store.db.putCache(k.keys, { canonical: k.canonical, outputs: outs.map((s) => s?.id ?? null) });
    return outs;
  }

  #vertexInfo(v: Vertex): Omit<VertexEvent, 'cached'> {
    const pg = v.metadata?.progressGroup;
    return {
      digest: v.digest,
      inputs: v.inputs.map((i) => i.vertex.digest),
      name: v.name,
      ...(pg ? { progressGroup: { id: pg.id, name: pg.name, weak: pg.weak } } : {}),
    };
  }

  #reportCached(v: Vertex, st: VertexState): void {
    if (st.reported) return;
    st.reported = true;
    st.cached = true;
    this.progress.vertexCached(this.#vertexInfo(v));
  }

  /**
   * Progress of a vertex's key computation (a source resolving). The vertex
   * is shown (started) before its first report, so no report points at a
   * vertex the client does not know.
   */
  #writer(v: Vertex): ProgressWriter {
    const inner = vertexWriter(v.digest, [this.progress.emit]);
    const show = () => {
      if (!this.progress.shown(v.digest)) this.progress.emit({ type: 'vertex', vertex: { ...this.#vertexInfo(v), cached: false, started: new Date() } });
    };
    return {
      log: (stream, msg, only) => (show(), inner.log(stream, msg, only)),
      logHistoryOnly: (stream, msg) => (show(), inner.logHistoryOnly?.(stream, msg)),
      status: (id, name, current, total, done) => (show(), inner.status(id, name, current, total, done)),
      warn: (short, detail) => (show(), inner.warn(short, detail)),
    };
  }
}

/**
 * An exec op's key plaintext: digests of its command line, working
 * directory and each environment value (names kept; values never stored).
 */
function execPlain(v: Vertex): Pick<StepKey, 'exec'> {
  if (v.op.op?.$case !== 'exec') return {};
  const meta = v.op.op.value.meta;
  const env: Record<string, string> = {};
  for (const e of meta?.env ?? []) {
    const eq = e.indexOf('=');
    env[eq < 0 ? e : e.slice(0, eq)] = digestText(eq < 0 ? '' : e.slice(eq + 1));
  }
  return { exec: { args: digestText(JSON.stringify(meta?.args ?? [])), env, cwd: digestText(meta?.cwd ?? '') } };
}

/** What an executor is given: the op of the `pb.Op`'s kind (`pb.ExecOp`, `pb.FileOp`, `pb.MergeOp`, `pb.DiffOp`, …). */
type OpPayload = NonNullable<pb.Op['op']>['value'];

/**
 * The op an executor of `kind` runs: the `pb.Op`'s payload, when the op is of
 * that kind. An executor registered under another kind's key (by a plugin's
 * `setup`) is a `PLUGIN` error naming the op and the plugin.
 */
function unwrapOp(v: Pick<Vertex, 'digest' | 'name' | 'op'>, kind: OpKind, owner?: string): OpPayload {
  const op = v.op.op;
  if (op?.$case !== kind) {
    const actual = op?.$case ?? 'none';
    const by = owner ? ` by plugin ${owner}` : '';
    throw new BktError(
      'PLUGIN',
      `op ${v.digest} "${v.name}" is of kind ${actual}, but the executor registered for ${actual} ops${by} runs ${kind} ops`,
      { opDigest: v.digest, kind: op?.$case, executorKind: kind },
    );
  }
  return op.value;
}

function missingExecutor(v: Vertex): BktError {
  const hint =
    v.kind === 'exec'
      ? 'add @bkt/worker-runc to the plugins of bkt.config.ts'
      : v.kind === 'build'
        ? 'no plugin provides build ops'
        : "add the solver's built-in ops plugin (builtinOpsPlugin from @bkt/solver)";
  return new BktError('UNIMPLEMENTED', `no executor for ${v.kind} ops (op ${v.digest} "${v.name}"): ${hint}`, {
    opDigest: v.digest,
  });
}

/** Attaches the vertex to an error: BktErrors keep their code and gain `opDigest`; others become INTERNAL. */
export function vertexError(v: Vertex, err: unknown): BktError {
  if (isBktError(err)) {
    if (err.details.opDigest === undefined && err.code !== 'CANCELLED') {
      return new BktError(err.code, `${v.name}: ${err.message} (op ${v.digest})`, { ...err.details, opDigest: v.digest }, { cause: err });
    }
    return err;
  }
  const msg = err instanceof Error ? err.message : String(err);
  return new BktError('INTERNAL', `${v.name}: ${msg} (op ${v.digest})`, { opDigest: v.digest }, { cause: err });
}
