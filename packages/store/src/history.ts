/**
 * Build history: one record per solve in the metadata DB's `builds` table,
 * shaped like control.proto's BuildHistoryRecord where it fits (ref,
 * frontend and its attrs, exporters, error, created/completed, exporter
 * response, step counts). The step counts come from the build's progress
 * stream, as BuildKit counts them: every vertex shown, those cached, those
 * completed without error.
 *
 * Each build's progress — every event, with every byte its steps wrote,
 * however much displays clipped — is recorded while it runs
 * (progress-log.ts): in the database, and past its first MiB of output in
 * the build's log file `<root>/history/<id>/logs`, a store record (type
 * `build.logs`) held while the build runs: `bkt du` counts it, a prune
 * `--all` removes it (a prune without `--all` keeps it, as BuildKit's prune
 * keeps history). Both go with the build when the history is trimmed.
 *
 * Secrets never reach the store: the build's secret provider is watched and
 * every value it handed out is replaced by `***` in what is stored (error
 * message, attrs, exporter response, recorded progress and output), and
 * attrs whose name looks like a credential (`secret`, `password`, `token`,
 * …, e.g. `build-arg:GITHUB_TOKEN`) are stored as `***`. Hence attrs are
 * written when the build ends; the record of a running build holds its ref,
 * frontend and start time only.
 *
 * Kept: the newest `maxEntries` finished builds created within `maxAge`
 * (BuildKit's defaults: 50 builds, 48 hours); older ones, with their
 * recorded progress, are dropped when a build finishes. A pinned build
 * (`pin`) is neither counted nor dropped, and no prune removes its log file.
 * `delete` removes a finished build with everything recorded of it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BktError, isBktError, type ProgressEvent, type SecretProvider } from '@bkt/core';
import type { MetadataDB } from './metadata.js';
import { INLINE_LOG_BYTES, ProgressRecorder, readProgress } from './progress-log.js';
import { REDACTED, SecretValues } from './redact.js';
import { RECORD_ID, type Records } from './records.js';

export interface BuildHistoryRecord {
  /** The build id (the Solve request's `ref`). */
  ref: string;
  frontend: string;
  frontendAttrs: Record<string, string>;
  exporters: { type: string; attrs: Record<string, string> }[];
  /** `interrupted`: the process running the build exited before it finished. */
  status: 'running' | 'completed' | 'failed' | 'cancelled' | 'interrupted';
  /** Set when the build failed, was cancelled or interrupted (code: a `BktErrorCode`). */
  error?: { code: string; message: string };
  createdAt: Date;
  completedAt?: Date;
  numTotalSteps: number;
  numCachedSteps: number;
  numCompletedSteps: number;
  exporterResponse: Record<string, string>;
  /** Pinned: no history limit drops the build, no prune removes its log file (as read from the store; false when left out). */
  pinned?: boolean;
}

export interface HistoryLimits {
  /** Finished builds kept (default 50). */
  maxEntries?: number;
  /** Milliseconds a finished build is kept (default 48 hours). */
  maxAge?: number;
}

export interface BuildStart {
  ref: string;
  frontend?: string;
  frontendAttrs?: Record<string, string>;
  exporters?: { type: string; attrs: Record<string, string> }[];
}

/** What a solve reports to its history record while it runs and when it ends. */
export interface BuildRecorder {
  /** A secret provider that remembers the values it hands out (so they can be redacted). */
  secrets(inner: SecretProvider | undefined): SecretProvider;
  /**
   * A progress listener recording every event and counting steps, passing
   * events on to `inner` — except output only the history keeps
   * (`only: 'history'`), and with `only` left out of what it passes on.
   */
  observe(inner: ((event: ProgressEvent) => void) | undefined): (event: ProgressEvent) => void;
  /** Completes the record, then trims the history to its limits. */
  finish(outcome: { error?: Error; exporterResponse?: Record<string, string> }): Promise<void>;
}

/** The records namespace (`<root>/history/`) of builds' log files; reserved for the store. */
export const HISTORY_NAMESPACE = 'history';
/** The `recordType` of a build's log file in `bkt du`. */
export const HISTORY_RECORD_TYPE = 'build.logs';
/** The log file inside a build's record. */
const LOG_FILE = 'logs';

const DEFAULT_MAX_ENTRIES = 50;
const DEFAULT_MAX_AGE = 48 * 3600 * 1000;
/** Attribute names whose values are credentials. */
const SECRET_NAME = /secret|passw|token|credential|auth|private|apikey|api_key|access_key/i;

export interface BuildHistoryOptions {
  db: MetadataDB;
  records: Records;
  root: string;
  /** Running builds and their recorded progress are leased under it, so a store opened meanwhile by another process does not take them for interrupted, nor prunes them. */
  session: string;
  /** Whether a session is live (a build it runs is running). */
  isLive: () => (session: string) => boolean;
  limits?: HistoryLimits;
}

export class BuildHistory {
  readonly #opts: BuildHistoryOptions;
  readonly #maxEntries: number;
  readonly #maxAge: number;
  readonly #deletedListeners = new Set<(ref: string) => void>();

  constructor(opts: BuildHistoryOptions) {
    this.#opts = opts;
    this.#maxEntries = opts.limits?.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.#maxAge = opts.limits?.maxAge ?? DEFAULT_MAX_AGE;
  }

  /** Records a build as running and starts recording its progress; the returned recorder completes the record. */
  start(b: BuildStart): BuildRecorder {
    const { db, session } = this.#opts;
    const secrets = new SecretValues();
    const redactAttrs = (attrs: Record<string, string>): Record<string, string> =>
      Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, SECRET_NAME.test(k) ? REDACTED : secrets.text(v)]));

    const row: BuildHistoryRecord = {
      ref: b.ref,
      frontend: b.frontend ?? '',
      frontendAttrs: {},
      exporters: [],
      status: 'running',
      createdAt: new Date(),
      numTotalSteps: 0,
      numCachedSteps: 0,
      numCompletedSteps: 0,
      exporterResponse: {},
    };
    // The running record holds no attrs: which values are secrets is known only once the build has asked for them.
    db.addLease(session, 'build', b.ref);
    db.putBuild(row);
    const progress = new ProgressRecorder({ db, ref: b.ref, secrets, createLogFile: () => this.#createLogFile(b.ref) });

    const shown = new Set<string>();
    const cached = new Set<string>();
    const completed = new Set<string>();
    return {
      secrets: (inner) => ({
        get: async (id) => {
          const value = (await inner?.get(id)) ?? null;
          if (value && value.length > 0) secrets.add(value);
          return value;
        },
      }),
      observe: (inner) => (event) => {
        if (event.type === 'vertex') {
          const v = event.vertex;
          shown.add(v.digest);
          if (v.cached) cached.add(v.digest);
          if (v.completed && !v.error) completed.add(v.digest);
        }
        progress.write(event);
        if (event.type !== 'log' || event.log.only === undefined) inner?.(event);
        else if (event.log.only === 'display') {
          const { only: _only, ...log } = event.log;
          inner?.({ type: 'log', log });
        }
      },
      finish: async ({ error, exporterResponse }) => {
        progress.close();
        row.completedAt = new Date();
        row.numTotalSteps = shown.size;
        row.numCachedSteps = cached.size;
        row.numCompletedSteps = completed.size;
        row.exporterResponse = exporterResponse ?? {};
        if (error) {
          const code = isBktError(error) ? error.code : 'INTERNAL';
          row.status = code === 'CANCELLED' ? 'cancelled' : 'failed';
          row.error = { code, message: error.message };
        } else row.status = 'completed';
        db.putBuild({
          ...row,
          frontendAttrs: redactAttrs(b.frontendAttrs ?? {}),
          exporters: (b.exporters ?? []).map((e) => ({ type: e.type, attrs: redactAttrs(e.attrs) })),
          exporterResponse: redactAttrs(row.exporterResponse),
          ...(row.error ? { error: { code: row.error.code, message: secrets.text(row.error.message) } } : {}),
        });
        db.removeLease(session, 'build', b.ref);
        db.removeLease(session, 'record', `${HISTORY_NAMESPACE}/${progressRecordId(b.ref)}`);
        await this.trim();
      },
    };
  }

  /** Build records, newest first; `ref` selects one build, `limit` the newest few. */
  list(opts: { ref?: string; limit?: number } = {}): BuildHistoryRecord[] {
    const { db } = this.#opts;
    const rows = opts.ref !== undefined ? [db.getBuild(opts.ref)].filter((r): r is BuildHistoryRecord => r !== undefined) : db.listBuilds();
    return rows.slice(0, opts.limit ?? rows.length);
  }

  /**
   * The recorded progress of build `ref`, in order: vertex, status, warning
   * and log events, the logs holding every byte the steps wrote (with the
   * build's secret values as `***`). A running build's so far. With
   * `logs: false`, log events are left out (and not read). `NOT_FOUND` when
   * the history has no such build, or once output is due that was in a log
   * file a prune `--all` removed.
   */
  async *progress(ref: string, opts: { logs?: boolean } = {}): AsyncGenerator<ProgressEvent> {
    const { db, root } = this.#opts;
    if (!db.getBuild(ref)) throw new BktError('NOT_FOUND', `no build ${ref} in the history of ${root}`, { ref });
    const id = progressRecordId(ref);
    const missingLogFile = () =>
      new BktError('NOT_FOUND', `the logs of build ${ref} past its first ${INLINE_LOG_BYTES / (1024 * 1024)}MiB are no longer in the store (removed by a prune --all)`, { ref });
    yield* readProgress(db, ref, join(root, HISTORY_NAMESPACE, id, LOG_FILE), { logs: opts.logs, missingLogFile });
  }

  /**
   * Pins build `ref` (no history limit drops it, no prune removes its log
   * file) or unpins it. `NOT_FOUND` when the history has no such build.
   */
  pin(ref: string, pinned: boolean): void {
    const { db, root } = this.#opts;
    if (!db.pinBuild(ref, { namespace: HISTORY_NAMESPACE, id: progressRecordId(ref) }, pinned)) {
      throw new BktError('NOT_FOUND', `no build ${ref} in the history of ${root}`, { ref });
    }
  }

  /**
   * Deletes build `ref`: its record, its recorded progress and its log file,
   * all at once (a crash leaves all of it or none). `NOT_FOUND` when the
   * history has no such build; `INVALID_ARGUMENT` while it runs.
   */
  async delete(ref: string): Promise<void> {
    const { root } = this.#opts;
    const outcome = await this.#delete(ref);
    if (outcome === 'missing') throw new BktError('NOT_FOUND', `no build ${ref} in the history of ${root}`, { ref });
    if (outcome !== 'deleted') {
      throw new BktError('INVALID_ARGUMENT', `build ${ref} is still running; its record can be deleted once it ends`, { ref });
    }
  }

  /** Calls `listener` with the ref of every build this process deletes from the history (`delete`, or trimmed to its limits) until the returned function is called. */
  onDeleted(listener: (ref: string) => void): () => void {
    this.#deletedListeners.add(listener);
    return () => this.#deletedListeners.delete(listener);
  }

  /** Drops the finished builds beyond the limits, with their recorded progress; pinned ones stay. */
  async trim(): Promise<void> {
    const { db } = this.#opts;
    for (const ref of db.buildsBeyond(this.#maxEntries, this.#maxAge)) await this.#delete(ref);
  }

  async #delete(ref: string): Promise<'deleted' | 'missing' | 'running' | 'held'> {
    const { db, records } = this.#opts;
    const id = progressRecordId(ref);
    const files = join(this.#opts.root, HISTORY_NAMESPACE, id);
    const trash = join(records.trashDir, `${this.#opts.session}~${randomBytes(8).toString('hex')}`);
    mkdirSync(records.trashDir, { recursive: true });
    // The log file's directory goes to the trash inside the transaction (the next open empties a dead process's trash), and is deleted after it.
    const outcome = db.deleteBuild(ref, { namespace: HISTORY_NAMESPACE, id }, this.#opts.isLive(), () => {
      if (existsSync(files)) renameSync(files, trash);
    });
    if (outcome === 'deleted') {
      await rm(trash, { recursive: true, force: true });
      for (const l of [...this.#deletedListeners]) l(ref);
    }
    return outcome;
  }

  /** Makes the record of build `ref`'s log file, held until the build ends, and returns the file's path. */
  #createLogFile(ref: string): string {
    const { db, root, session } = this.#opts;
    const id = progressRecordId(ref);
    // Held before it exists: no prune in any process takes it while the build writes it.
    db.holdRecord(session, HISTORY_NAMESPACE, id);
    db.putRecord(
      {
        namespace: HISTORY_NAMESPACE,
        id,
        recordType: HISTORY_RECORD_TYPE,
        description: `logs of build ${ref} past their first ${INLINE_LOG_BYTES / (1024 * 1024)}MiB`,
        mutable: false,
        // Pinned with its build (a build may be pinned while it runs).
        pinned: db.getBuild(ref)?.pinned ?? false,
        data: { ref },
        snapshots: [],
        blobs: [],
      },
      () => {},
    );
    const dir = join(root, HISTORY_NAMESPACE, id);
    mkdirSync(dir, { recursive: true });
    return join(dir, LOG_FILE);
  }
}

/** The record id of build `ref`'s progress: the ref when it is a valid record id (BuildKit refs are), else a digest of it. */
function progressRecordId(ref: string): string {
  return RECORD_ID.test(ref) ? ref : `sha256-${createHash('sha256').update(ref).digest('hex')}`;
}
