/** Build history in the store: records, recorded progress (every byte of output), its lifetime, and builds of a dead process. */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it, expect } from 'vitest';
import { isBktError, type Digest, type ProgressEvent, type VertexEvent } from '@bkt/core';
import { __resetOpenRoots, Store } from './store.js';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-history-'));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const STEP = `sha256:${'1'.repeat(64)}` as Digest;
const vertex = (extra: Partial<VertexEvent> = {}): ProgressEvent => ({ type: 'vertex', vertex: { digest: STEP, inputs: [], name: 'RUN seq', cached: false, ...extra } });
const log = (stream: 1 | 2, msg: string | Uint8Array, only?: 'display' | 'history'): ProgressEvent => ({
  type: 'log',
  log: { vertex: STEP, timestamp: new Date(), stream, msg: typeof msg === 'string' ? Buffer.from(msg) : msg, ...(only ? { only } : {}) },
});

async function collect(events: AsyncIterable<ProgressEvent>): Promise<ProgressEvent[]> {
  const out: ProgressEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

/** Each stream's recorded bytes, concatenated. */
function streams(events: ProgressEvent[]): { 1: Buffer; 2: Buffer } {
  const of = (n: number) => Buffer.concat(events.flatMap((e) => (e.type === 'log' && e.log.stream === n ? [Buffer.from(e.log.msg)] : [])));
  return { 1: of(1), 2: of(2) };
}

describe('recorded progress', () => {
  it('keeps every event and every byte of output; displays get no history-only output and no `only` field', async () => {
    const store = await Store.open(root, 'copy');
    try {
      const rec = store.history.start({ ref: 'b1' });
      const shown: ProgressEvent[] = [];
      const listen = rec.observe((e) => shown.push(e));
      listen(vertex({ started: new Date() }));
      // 9 MiB of stdout in 64 KiB chunks: the first 2 MiB for displays and history, the rest for history only.
      const hash = createHash('sha256');
      for (let i = 0; i < 144; i++) {
        const chunk = Buffer.alloc(65536, String.fromCharCode(97 + (i % 26)));
        hash.update(chunk);
        listen(log(1, chunk, i < 32 ? undefined : 'history'));
        if (i === 31) listen(log(2, '\n[output clipped, log limit 2MiB reached]\n', 'display'));
      }
      listen(log(2, 'a warning line\n'));
      listen(vertex({ started: new Date(), completed: new Date() }));
      await rec.finish({});

      const events = await collect(store.history.progress('b1'));
      const out = streams(events);
      expect(out[1].length).toBe(144 * 65536);
      expect(createHash('sha256').update(out[1]).digest('hex')).toBe(hash.digest('hex'));
      expect(out[2].toString()).toBe('a warning line\n');
      expect(events.filter((e) => e.type === 'vertex').map((e) => e.type === 'vertex' && !!e.vertex.completed)).toEqual([false, true]);
      expect(events.at(-1)).toMatchObject({ type: 'vertex', vertex: { digest: STEP, completed: expect.any(Date) } });

      const shownLogs = shown.filter((e) => e.type === 'log');
      expect(shownLogs).toHaveLength(32 + 2);
      expect(shownLogs.every((e) => e.type === 'log' && !('only' in e.log))).toBe(true);
      expect(streams(shown)[2].toString()).toBe('\n[output clipped, log limit 2MiB reached]\na warning line\n');

      // Without logs, only the other events are read.
      expect((await collect(store.history.progress('b1', { logs: false }))).map((e) => e.type)).toEqual(['vertex', 'vertex']);
      expect(store.history.list({ ref: 'b1' })[0]).toMatchObject({ status: 'completed', numTotalSteps: 1, numCompletedSteps: 1, numCachedSteps: 0 });
    } finally {
      await store.close();
    }
  });

  it("replaces the build's secret values in recorded output, also across chunks, and in errors", async () => {
    const store = await Store.open(root, 'copy');
    try {
      const rec = store.history.start({ ref: 'b2' });
      const secrets = rec.secrets({ get: async () => Buffer.from('hunter2-value\n') });
      await secrets.get('tok');
      const listen = rec.observe(undefined);
      listen(vertex({ started: new Date() }));
      listen(log(1, 'before hunter2-va'));
      listen(log(2, 'interleaved\n'));
      listen(log(1, 'lue after\n'));
      listen(vertex({ started: new Date(), completed: new Date(), error: 'process "echo hunter2-value" failed' }));
      await rec.finish({ error: new Error('echo hunter2-value failed') });

      const events = await collect(store.history.progress('b2'));
      expect(streams(events)[1].toString()).toBe('before *** after\n');
      expect(streams(events)[2].toString()).toBe('interleaved\n');
      expect(events.at(-1)).toMatchObject({ type: 'vertex', vertex: { error: 'process "echo ***" failed' } });
      expect(store.history.list({ ref: 'b2' })[0].error?.message).toBe('echo *** failed');
      for (const name of await readdir(root)) {
        if (name.startsWith('metadata.db')) expect(await readFile(join(root, name), 'latin1')).not.toContain('hunter2');
      }
    } finally {
      await store.close();
    }
  });

  it('keeps a small build in the database; output past 1 MiB goes to a log file: a record du counts, prune keeps, prune --all removes', async () => {
    const store = await Store.open(root, 'copy');
    try {
      const small = store.history.start({ ref: 'small' });
      small.observe(undefined)(log(1, 'a few lines\n'));
      await small.finish({});
      expect(existsSync(join(root, 'history/small'))).toBe(false);
      expect(await store.diskUsage()).toEqual([]);

      const rec = store.history.start({ ref: 'b3' });
      const listen = rec.observe(undefined);
      listen(vertex({ started: new Date() }));
      for (let i = 0; i < 3; i++) listen(log(1, Buffer.alloc(1024 * 1024, 'x')));
      // While the build runs its log file is held: not even prune --all takes it.
      expect((await store.prune({ all: true })).map((r) => r.id)).toEqual([]);
      await rec.finish({});

      const usage = (await store.diskUsage()).find((r) => r.id === 'history/b3');
      expect(usage).toMatchObject({ recordType: 'build.logs', inUse: false, size: 2 * 1024 * 1024 });
      expect(await store.prune()).toEqual([]);
      expect(streams(await collect(store.history.progress('b3')))[1].length).toBe(3 * 1024 * 1024);
      expect((await store.prune({ all: true })).map((r) => r.id)).toEqual(['history/b3']);
      expect(existsSync(join(root, 'history/b3'))).toBe(false);
      expect(store.history.list({ ref: 'b3' })).toHaveLength(1);
      // What the database kept still reads; the rest is reported gone.
      expect((await collect(store.history.progress('b3', { logs: false }))).map((e) => e.type)).toEqual(['vertex']);
      const err = await collect(store.history.progress('b3')).catch((e: unknown) => e);
      expect(isBktError(err, 'NOT_FOUND')).toBe(true);
      expect((err as Error).message).toMatch(/logs of build b3 past its first 1MiB are no longer in the store/);
      await expect(collect(store.history.progress('nope'))).rejects.toThrow(/no build nope in the history/);
    } finally {
      await store.close();
    }
  });

  it('goes with its build when the history is trimmed', async () => {
    const store = await Store.open(root, 'copy', { history: { maxEntries: 1 } });
    try {
      for (const ref of ['old', 'new']) {
        const rec = store.history.start({ ref });
        rec.observe(undefined)(log(1, Buffer.alloc(1024 * 1024 + 1, ref)));
        await rec.finish({});
      }
      expect(store.history.list().map((b) => b.ref)).toEqual(['new']);
      expect(existsSync(join(root, 'history/old'))).toBe(false);
      expect((await store.diskUsage()).map((r) => r.id)).toEqual(['history/new']);
      await expect(collect(store.history.progress('old'))).rejects.toThrow(/no build old/);
    } finally {
      await store.close();
    }
  });

  it('keeps refs that are not record ids under a digest of the ref', async () => {
    const store = await Store.open(root, 'copy');
    try {
      const rec = store.history.start({ ref: '../../escape' });
      rec.observe(undefined)(log(1, Buffer.alloc(2 * 1024 * 1024, 'i')));
      await rec.finish({});
      expect(existsSync(join(root, 'escape'))).toBe(false);
      expect((await store.diskUsage()).map((r) => r.id)).toEqual([expect.stringMatching(/^history\/sha256-[0-9a-f]{64}$/)]);
      expect(streams(await collect(store.history.progress('../../escape')))[1].length).toBe(2 * 1024 * 1024);
    } finally {
      await store.close();
    }
  });
});

it('a build still running when its process died is marked interrupted when the store opens; its progress so far is readable', async () => {
  const dead = await Store.open(root, 'copy');
  const rec = dead.history.start({ ref: 'orphan', frontend: 'dockerfile.v0' });
  rec.observe(undefined)(log(1, 'got this far\n'));
  expect(dead.history.list()[0]).toMatchObject({ ref: 'orphan', status: 'running' });
  // The process "dies": its connection goes, nothing is finished.
  dead.db.close();
  __resetOpenRoots(root);

  const store = await Store.open(root);
  try {
    const [b] = store.history.list();
    expect(b).toMatchObject({ ref: 'orphan', status: 'interrupted', frontend: 'dockerfile.v0', error: { code: 'INTERNAL' } });
    expect(b.error!.message).toContain('exited before it finished');
    expect(b.completedAt).toBeInstanceOf(Date);
    expect(streams(await collect(store.history.progress('orphan')))[1].toString()).toBe('got this far\n');
  } finally {
    await store.close();
  }
});
