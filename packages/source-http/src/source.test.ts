import { createHash } from 'node:crypto';
import { lstat, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBkt, isBktError, type BuildContext, type Snapshot } from '@bkt/core';
import { testBuildContext } from '@bkt/core/testing';
import { Store } from '@bkt/store';
import httpSource, { createHttpSource } from './index.js';

const HELLO = 'hello over http\n';
const LAST_MODIFIED = new Date('2024-01-02T03:04:05Z');
/** A source ref as the solver passes it: the identifier without `http://`. */
const at = (path: string) => `${base.slice('http://'.length)}${path}`;
const sha256 = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

let work: string;
let store: Store;
let server: Server;
let base: string;
const seen: { url: string; authorization?: string }[] = [];

/** `finish()` of the test builds, by build id: runs what the source registered with `onFinish`. */
const finishers = new Map<string, () => Promise<void>>();

function context(buildId = 'b1', secrets: Record<string, string> = {}): BuildContext {
  const { ctx, finish } = testBuildContext({
    buildId,
    root: store.root,
    snapshotter: store.snapshotter,
    content: store.content,
    records: store.records,
    secrets: { get: async (id) => (id in secrets ? new TextEncoder().encode(secrets[id]) : null) },
  });
  finishers.set(buildId, finish);
  return ctx;
}

/** The snapshot's tree: name → { mode, content, mtime }. */
async function filesOf(snapshot: Snapshot) {
  const m = await snapshot.mount();
  try {
    const out: Record<string, { mode: number; content: string; mtime: number; uid: number }> = {};
    for (const name of await readdir(m.path)) {
      const st = await lstat(join(m.path, name));
      out[name] = { mode: st.mode & 0o7777, content: await readFile(join(m.path, name), 'utf8'), mtime: st.mtimeMs, uid: st.uid };
    }
    return out;
  } finally {
    await m.release();
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-source-http-'));
  store = await Store.open(join(work, 'store'));
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    if (req.url === '/files/hello.txt') res.writeHead(200, { 'last-modified': LAST_MODIFIED.toUTCString() }).end(HELLO);
    else if (req.url === '/') res.writeHead(200).end('index page');
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  server?.close();
  await store?.close();
  await rm(work, { recursive: true, force: true });
});

describe('http source', () => {
  const source = createHttpSource();

  it('downloads one file named after the URL, mode 0600, with the Last-Modified time', async () => {
    const ctx = context();
    const id = source.identify('http', at('/files/hello.txt'), {});
    expect(id.ref).toBe(`${base}/files/hello.txt`);
    const instance = await source.resolve(id, ctx);
    const key = await instance.cacheKey(ctx);
    expect(key.key).toMatch(/^sha256:[0-9a-f]{64}$/);
    const files = await filesOf(await instance.snapshot(ctx));
    expect(Object.keys(files)).toEqual(['hello.txt']);
    expect(files['hello.txt']).toMatchObject({ mode: 0o600, content: HELLO, mtime: LAST_MODIFIED.getTime(), uid: 0 });
  });

  it('names the file `index` when the URL has no path, and honours filename, perm and checksum', async () => {
    const ctx = context();
    const idx = await source.resolve(source.identify('http', at('/'), {}), ctx);
    expect(Object.keys(await filesOf(await idx.snapshot(ctx)))).toEqual(['index']);

    const attrs = { 'http.checksum': sha256(HELLO), 'http.filename': 'checked.txt', 'http.perm': '0640' };
    const checked = await source.resolve(source.identify('http', at('/files/hello.txt'), attrs), ctx);
    const files = await filesOf(await checked.snapshot(ctx));
    expect(files['checked.txt']).toMatchObject({ mode: 0o640, content: HELLO });
  });

  it('keys the cache by content: a second resolve downloads again and gets the same key; other options another key', async () => {
    const key = async (attrs: Record<string, string> = {}) => {
      const ctx = context();
      return (await (await source.resolve(source.identify('http', at('/files/hello.txt'), attrs), ctx)).cacheKey(ctx)).key;
    };
    const before = seen.length;
    const a = await key();
    const b = await key();
    expect(seen.length).toBe(before + 2);
    expect(b).toBe(a);
    expect(await key({ 'http.perm': '0644' })).not.toBe(a);
  });

  it('sends the Authorization header from the named secret, and never without it', async () => {
    const ctx = context('b1', { token: 'Bearer s3cret' });
    const inst = await source.resolve(source.identify('http', at('/files/hello.txt'), { 'http.authheadersecret': 'token' }), ctx);
    await inst.cacheKey(ctx);
    expect(seen.at(-1)).toEqual({ url: '/files/hello.txt', authorization: 'Bearer s3cret' });
  });

  it('fails on a checksum mismatch, a missing URL and a bad attribute, naming them', async () => {
    const ctx = context();
    const bad = await source.resolve(source.identify('http', at('/files/hello.txt'), { 'http.checksum': `sha256:${'0'.repeat(64)}` }), ctx);
    const mismatch = await bad.cacheKey(ctx).catch((e: unknown) => e);
    expect(isBktError(mismatch) && mismatch.message).toMatch(/digest mismatch for .*hello\.txt/);

    const missing = await source.resolve(source.identify('http', at('/nope.txt'), {}), ctx);
    expect(String(await missing.cacheKey(ctx).catch((e: unknown) => e))).toMatch(/HTTP 404/);

    expect(() => source.identify('http', at('/x'), { 'http.bogus': '1' })).toThrow(/http\.bogus: unknown attribute/);
    expect(() => source.identify('http', at('/x'), { 'http.filename': '../x' })).toThrow(/http\.filename/);
    expect(() => source.identify('http', at('/x'), { 'http.perm': 'rw' })).toThrow(/http\.perm/);
  });
});

describe('the plugin', () => {
  it('removes the downloads a build did not use (a cache hit) after the solve', async () => {
    const plugin = httpSource();
    const bkt = await createBkt([plugin]);
    const source = bkt.registries.sources.get('https');
    expect(source).toBe(plugin.sources![0]);
    const downloads = async () => new Set(await readdir(join(store.root, 'tmp')).catch(() => []));
    const before = await downloads();
    const ctx = context('unused');
    await (await source!.resolve(source!.identify('http', at('/files/hello.txt'), {}), ctx)).cacheKey(ctx);
    const during = await downloads();
    expect(during.size).toBe(before.size + 1);
    await finishers.get('unused')!();
    expect(await downloads()).toEqual(before);
    await bkt.close();
  });
});
