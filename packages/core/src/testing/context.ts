import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BktError } from '../errors.js';
import type { BuildClient } from '../client.js';
import { createBuildScope } from '../scope.js';
import type {
  BuildContext,
  ContentStore,
  ProgressWriter,
  RecordHold,
  RecordInput,
  RecordNamespace,
  SecretProvider,
  Snapshotter,
  StoreRecord,
  StoreRecords,
} from '../types.js';

export interface TestContextOptions {
  root: string;
  snapshotter: Snapshotter;
  content: ContentStore;
  /** Default: `memoryRecords(root)`. */
  records?: StoreRecords;
  /** Default: a client offering nothing. */
  client?: BuildClient;
  buildId?: string;
  entitlements?: Iterable<string>;
  /** Default: the client's. */
  secrets?: SecretProvider;
  signal?: AbortSignal;
  progress?: ProgressWriter;
}

/**
 * A `BuildContext` for a backend's tests, as the solver makes one, and
 * `finish()` to run what the backend registered with `onFinish`.
 */
export function testBuildContext(opts: TestContextOptions): { ctx: BuildContext; finish(): Promise<void> } {
  const scope = createBuildScope({
    buildId: opts.buildId ?? 'test',
    ...(opts.client ? { client: opts.client } : {}),
    ...(opts.entitlements ? { entitlements: opts.entitlements } : {}),
    ...(opts.secrets ? { secrets: opts.secrets } : {}),
  });
  const ctx: BuildContext = {
    buildId: scope.buildId,
    client: scope.client,
    entitlements: scope.entitlements,
    secrets: scope.secrets,
    ssh: scope.ssh,
    onFinish: (cleanup) => scope.onFinish(cleanup),
    root: opts.root,
    snapshotter: opts.snapshotter,
    content: opts.content,
    records: opts.records ?? memoryRecords(opts.root),
    signal: opts.signal ?? new AbortController().signal,
    progress: opts.progress ?? { log() {}, status() {}, warn() {} },
  };
  return { ctx, finish: () => scope.finish() };
}

/**
 * A `StoreRecords` kept in memory (record files under `<root>/<namespace>/<id>`),
 * for tests of backends without a store. No references are checked, nothing is pruned.
 */
export function memoryRecords(root: string): StoreRecords {
  const namespaces = new Map<string, RecordNamespace>();
  const make = (name: string): RecordNamespace => {
    const dir = join(root, name);
    const rows = new Map<string, StoreRecord>();
    const holds = new Map<string, number>();
    return {
      name,
      dir,
      get: async (id) => rows.get(id),
      list: async () => [...rows.values()],
      put: async (id, input: RecordInput) => {
        const old = rows.get(id);
        // Defaults of every optional field, then what the plugin gave.
        const rec = {
          description: '',
          mutable: false,
          pinned: false,
          snapshots: [],
          blobs: [],
          data: {},
          ...input,
          namespace: name,
          id,
          path: join(dir, id),
          createdAt: old?.createdAt ?? new Date(),
          usageCount: old?.usageCount ?? 0,
          ...(old?.lastUsedAt ? { lastUsedAt: old.lastUsedAt } : {}),
        } as StoreRecord;
        rows.set(id, rec);
        return rec;
      },
      touch: async (id) => {
        const r = rows.get(id);
        if (r) {
          r.lastUsedAt = new Date();
          r.usageCount++;
        }
      },
      hold: async (id): Promise<RecordHold> => {
        holds.set(id, (holds.get(id) ?? 0) + 1);
        let released = false;
        return {
          release: async () => {
            if (released) return;
            released = true;
            holds.set(id, (holds.get(id) ?? 1) - 1);
          },
        };
      },
      remove: async (id) => {
        if ((holds.get(id) ?? 0) > 0) throw new BktError('PERMISSION_DENIED', `record ${name}/${id} is in use`);
        rows.delete(id);
        await rm(join(dir, id), { recursive: true, force: true });
      },
    };
  };
  return {
    namespace(name) {
      let ns = namespaces.get(name);
      if (!ns) namespaces.set(name, (ns = make(name)));
      return ns;
    },
    tempPath: (prefix) => join(root, 'tmp', `${prefix}-${randomBytes(8).toString('hex')}`),
  };
}
