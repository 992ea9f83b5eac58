/**
 * The `local` source (@bkt/source-local, the receiver that remembers its
 * last sync in a store record) reading a client's directory over a real
 * grpc-js session: after one file of 2,000 changed, the next sync gets
 * only that file's bytes from the client.
 */
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { BuildClient, BuildContext, ClientLocalDir } from '@bkt/core';
import { createHostClient } from '@bkt/fsutil';
import localSource from '@bkt/source-local';
import { openTestContext, type TestContext } from '@bkt/store/testing';
import { sessionBuildClient } from './daemon/build-client.js';
import { connect, type Connected } from './session.test-util.js';

let work: string;
let store: TestContext;
const open: Connected[] = [];

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-session-local-'));
  store = await openTestContext();
});
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
  await store.close();
  await rm(work, { recursive: true, force: true });
});

/** The host client, counting the bytes its directory reads send (by path). */
function countingClient(inner: BuildClient): BuildClient & { sent: Map<string, number> } {
  const sent = new Map<string, number>();
  return {
    ...inner,
    sent,
    localDir(name) {
      const dir = inner.localDir(name);
      if (!dir) return undefined;
      const counted: ClientLocalDir = {
        ...dir,
        name: dir.name,
        syncKey: dir.syncKey,
        stat: (sel, signal) => dir.stat(sel, signal),
        async *read(path, signal) {
          for await (const chunk of dir.read(path, signal)) {
            sent.set(path, (sent.get(path) ?? 0) + chunk.length);
            yield chunk;
          }
        },
      };
      return counted;
    },
  };
}

it('after one file of a 2,000-file context changed, the local source gets only that file over the session', async () => {
  const dir = join(work, 'ctx');
  const old = new Date(1_600_000_000_000);
  for (let d = 0; d < 20; d++) {
    await mkdir(join(dir, `d${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) {
      const file = join(dir, `d${d}`, `f${f}.txt`);
      await writeFile(file, `file ${d}/${f}\n`.repeat(40));
      await utimes(file, old, old);
    }
  }
  const client = countingClient(createHostClient({ localDirs: { context: dir } }));
  const c = await connect('grpc', client, { sharedKey: 'the-client' });
  open.push(c);
  const source = localSource().sources![0]!;

  const took: number[] = [];
  const sync = async () => {
    const started = Date.now();
    const daemon = sessionBuildClient(c.session, { localDirNames: ['context'] });
    const ctx: BuildContext = { ...store.ctx, client: daemon };
    const instance = await source.resolve(source.identify('local', 'context', {}), ctx);
    const { key } = await instance.cacheKey(ctx);
    const snapshot = await instance.snapshot(ctx);
    const mounted = await snapshot.mount();
    const changedContent = await readFile(join(mounted.path, 'd7/f42.txt'), 'utf8');
    await mounted.release();
    await daemon.close();
    took.push(Date.now() - started);
    return { key, changedContent };
  };

  const first = await sync();
  expect(client.sent.size).toBe(2000);
  const firstBytes = [...client.sent.values()].reduce((a, b) => a + b, 0);
  expect(firstBytes).toBeGreaterThan(2000 * 400);

  client.sent.clear();
  await writeFile(join(dir, 'd7/f42.txt'), 'changed\n');
  await utimes(join(dir, 'd7/f42.txt'), new Date(1_650_000_000_000), new Date(1_650_000_000_000));
  const second = await sync();
  expect([...client.sent]).toEqual([['d7/f42.txt', 'changed\n'.length]]);
  expect(second.changedContent).toBe('changed\n');
  expect(second.key).not.toBe(first.key);

  client.sent.clear();
  const third = await sync();
  expect([...client.sent]).toEqual([]);
  expect(third.key).toBe(second.key);
  console.log(`2,000 files over a grpc session: first sync ${took[0]} ms (${firstBytes} bytes), one changed ${took[1]} ms (8 bytes), unchanged ${took[2]} ms (0 bytes)`);
});
