/**
 * Build history: one record per solve in the metadata DB's `builds` table,
 * shaped like control.proto's BuildHistoryRecord where it fits (ref,
 * frontend and its attrs, exporters, error, created/completed, exporter
 * response, step counts). The step counts come from the build's progress
 * stream, as BuildKit counts them: every vertex shown, those cached, those
 * completed without error.
 *
 * Secrets never reach the database: the build's secret provider is watched
 * and every value it handed out is replaced by `***` in what is stored (error
 * message, attrs, exporter response), and attrs whose name looks like a
 * credential (`secret`, `password`, `token`, …, e.g. `build-arg:GITHUB_TOKEN`)
 * are stored as `***`. Hence attrs are written when the build ends; the
 * record of a running build holds its ref, frontend and start time only.
 *
 * Kept: the newest `maxEntries` finished builds created within `maxAge`
 * (BuildKit's defaults: 50 builds, 48 hours); older ones are dropped when a
 * build finishes.
 */
import { isBktError, type ProgressEvent, type SecretProvider } from '@bkt/core';
import type { BuildRow, MetadataDB } from './metadata.js';

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
  /** A progress listener counting steps, passing events on to `inner`. */
  observe(inner: ((event: ProgressEvent) => void) | undefined): (event: ProgressEvent) => void;
  finish(outcome: { error?: Error; exporterResponse?: Record<string, string> }): void;
}

const DEFAULT_MAX_ENTRIES = 50;
const DEFAULT_MAX_AGE = 48 * 3600 * 1000;
const REDACTED = '***';
/** Attribute names whose values are credentials. */
const SECRET_NAME = /secret|passw|token|credential|auth|private|apikey|api_key|access_key/i;

export class BuildHistory {
  readonly #maxEntries: number;
  readonly #maxAge: number;

  /** `session`: running builds are leased under it, so a store opened meanwhile by another process does not take them for interrupted. */
  constructor(
    private readonly db: MetadataDB,
    limits: HistoryLimits = {},
    private readonly session = '',
  ) {
    this.#maxEntries = limits.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.#maxAge = limits.maxAge ?? DEFAULT_MAX_AGE;
  }

  /** Records a build as running; the returned recorder completes the record. */
  start(b: BuildStart): BuildRecorder {
    const secretValues = new Set<string>();
    const redact = (text: string): string => {
      let out = text;
      // Longest first, so a secret containing another is replaced whole.
      for (const v of [...secretValues].sort((x, y) => y.length - x.length)) out = out.split(v).join(REDACTED);
      return out;
    };
    const redactAttrs = (attrs: Record<string, string>): Record<string, string> =>
      Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, SECRET_NAME.test(k) ? REDACTED : redact(v)]));

    const row: BuildRow = {
      ref: b.ref,
      frontend: b.frontend ?? '',
      frontendAttrs: {},
      exporters: [],
      status: 'running',
      createdAt: Date.now(),
      completedAt: null,
      numTotalSteps: 0,
      numCachedSteps: 0,
      numCompletedSteps: 0,
      exporterResponse: {},
    };
    // The running record holds no attrs: which values are secrets is known only once the build has asked for them.
    this.db.addLease(this.session, 'build', b.ref);
    this.db.putBuild(row);

    const shown = new Set<string>();
    const cached = new Set<string>();
    const completed = new Set<string>();
    return {
      secrets: (inner) => ({
        get: async (id) => {
          const value = (await inner?.get(id)) ?? null;
          if (value && value.length > 0) {
            const text = Buffer.from(value).toString('utf8');
            secretValues.add(text);
            // A value with a trailing newline (a file) is also redacted without it.
            const trimmed = text.trim();
            if (trimmed.length > 0) secretValues.add(trimmed);
          }
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
        inner?.(event);
      },
      finish: ({ error, exporterResponse }) => {
        row.completedAt = Date.now();
        row.numTotalSteps = shown.size;
        row.numCachedSteps = cached.size;
        row.numCompletedSteps = completed.size;
        row.exporterResponse = exporterResponse ?? {};
        if (error) {
          const code = isBktError(error) ? error.code : 'INTERNAL';
          row.status = code === 'CANCELLED' ? 'cancelled' : 'failed';
          row.error = { code, message: error.message };
        } else row.status = 'completed';
        this.db.putBuild({
          ...row,
          frontendAttrs: redactAttrs(b.frontendAttrs ?? {}),
          exporters: (b.exporters ?? []).map((e) => ({ type: e.type, attrs: redactAttrs(e.attrs) })),
          exporterResponse: redactAttrs(row.exporterResponse),
          ...(row.error ? { error: { code: row.error.code, message: redact(row.error.message) } } : {}),
        });
        this.db.removeLease(this.session, 'build', b.ref);
        this.db.trimBuilds(this.#maxEntries, this.#maxAge);
      },
    };
  }

  /** Build records, newest first; `ref` selects one build, `limit` the newest few. */
  list(opts: { ref?: string; limit?: number } = {}): BuildHistoryRecord[] {
    const rows = opts.ref !== undefined ? [this.db.getBuild(opts.ref)].filter((r): r is BuildRow => r !== undefined) : this.db.listBuilds();
    return rows.slice(0, opts.limit ?? rows.length).map((r) => ({
      ref: r.ref,
      frontend: r.frontend,
      frontendAttrs: r.frontendAttrs,
      exporters: r.exporters,
      status: r.status,
      ...(r.error ? { error: r.error } : {}),
      createdAt: new Date(r.createdAt),
      ...(r.completedAt !== null ? { completedAt: new Date(r.completedAt) } : {}),
      numTotalSteps: r.numTotalSteps,
      numCachedSteps: r.numCachedSteps,
      numCompletedSteps: r.numCompletedSteps,
      exporterResponse: r.exporterResponse,
    }));
  }
}
