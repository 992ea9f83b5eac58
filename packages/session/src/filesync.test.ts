/**
 * A client's local directory read by the daemon over the session
 * (FileSync/DiffCopy): the client serves the host client of @bkt/fsutil,
 * the daemon reads it through `sessionBuildClient`; both over an in-memory
 * Duplex pair and over a real grpc-js Control.Session call.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BktError, readClientFile, type BuildClient, type ClientLocalDir, type FileStat } from '@bkt/core';
import { createHostClient } from '@bkt/fsutil';
import { sessionBuildClient } from './daemon/build-client.js';
import { KNOWN_FILE_BYTES, probedPath } from './daemon/local-dir.js';
import { connect, type Connected, type Transport } from './session.test-util.js';

let work: string;
const open: Connected[] = [];

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-session-filesync-'));
});
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
  await rm(work, { recursive: true, force: true });
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function bytes(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of chunks) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

/** A client whose local directory reads are counted (bytes the client sent, by path). */
function countingClient(inner: BuildClient): BuildClient & { sent: Map<string, number> } {
  const sent = new Map<string, number>();
  return {
    ...inner,
    sent,
    localDir(name) {
      const dir = inner.localDir(name);
      if (!dir) return undefined;
      const counted: ClientLocalDir = {
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

async function connected(transport: Transport, client: BuildClient, names: string[]) {
  const c = await connect(transport, client, { sharedKey: 'test-client' });
  open.push(c);
  return { c, daemon: sessionBuildClient(c.session, { localDirNames: names }) };
}

/** What of a stat the session carries exactly; mtime is compared apart (see `expectSameTimes`). */
function comparable(e: FileStat) {
  const { mtimeMs: _mtime, ...rest } = e;
  return rest;
}

/**
 * The wire's int64 nanoseconds pass through a double (~256 ns apart at today's times), and a
 * host's mtimeMs is itself a double: the two agree within a microsecond, not to it.
 */
function expectSameTimes(got: FileStat[], want: FileStat[]) {
  for (const [i, e] of got.entries()) expect(Math.abs(e.mtimeMs - want[i]!.mtimeMs), e.path).toBeLessThanOrEqual(0.001);
}

describe.each<Transport>(['in-memory', 'grpc'])('FileSync over %s', (transport) => {
  it('lists the same entries as the host client (modes, owners, sizes, times, symlinks, hardlinks) and reads their bytes', async () => {
    const dir = join(work, 'ctx');
    await mkdir(join(dir, 'sub/deep'), { recursive: true });
    await writeFile(join(dir, 'a.txt'), 'alpha');
    await writeFile(join(dir, 'sub/deep/b.bin'), randomBytes(100_000));
    await writeFile(join(dir, 'run.sh'), '#!/bin/sh\n');
    await chmod(join(dir, 'run.sh'), 0o4755);
    await chmod(join(dir, 'sub'), 0o1775);
    await symlink('sub/deep/b.bin', join(dir, 'link'));
    await symlink('/nowhere', join(dir, 'dangling'));
    await link(join(dir, 'a.txt'), join(dir, 'z-hardlink'));
    await utimes(join(dir, 'a.txt'), new Date(1_700_000_000_123), new Date(1_700_000_000_123));
    const host = createHostClient({ localDirs: { context: dir } });
    const { daemon } = await connected(transport, host, ['context']);

    const local = daemon.localDir('context')!;
    const got = await collect(local.stat());
    const want = await collect(host.localDir('context')!.stat());
    expect(got.map((e) => e.path)).toEqual(['a.txt', 'dangling', 'link', 'run.sh', 'sub', 'sub/deep', 'sub/deep/b.bin', 'z-hardlink']);
    expect(got.map(comparable)).toEqual(want.map(comparable));
    expectSameTimes(got, want);
    expect(got.find((e) => e.path === 'z-hardlink')).toMatchObject({ linkname: 'a.txt', size: 0 });
    expect(got.find((e) => e.path === 'run.sh')!.mode).toBe(0o104755);
    expect(got.find((e) => e.path === 'sub')!.mode).toBe(0o41775);
    // utimes() stores a Date's seconds as a float: within a microsecond.
    expect(got.find((e) => e.path === 'a.txt')!.mtimeMs).toBeCloseTo(1_700_000_000_123, 2);

    expect((await bytes(local.read('a.txt'))).toString()).toBe('alpha');
    expect(await bytes(local.read('sub/deep/b.bin'))).toEqual(await readFile(join(dir, 'sub/deep/b.bin')));
  });

  it("reads a client that serves only BuildKit's DiffCopy (one packet a message, as buildctl), without change tokens", async () => {
    const dir = join(work, 'ctx');
    await mkdir(join(dir, 'sub'), { recursive: true });
    await writeFile(join(dir, 'a.txt'), 'alpha');
    await writeFile(join(dir, 'sub/b.bin'), randomBytes(100_000));
    await symlink('a.txt', join(dir, 'link'));
    const host = createHostClient({ localDirs: { context: dir } });
    const c = await connect(transport, host, { sharedKey: 'test-client', batchedFileSync: false });
    open.push(c);
    expect(c.session.supports('/bkt.filesync.v1.FileSync/DiffCopy')).toBe(false);
    const local = sessionBuildClient(c.session, { localDirNames: ['context'] }).localDir('context')!;
    const got = await collect(local.stat());
    const want = await collect(host.localDir('context')!.stat());
    expect(got.every((e) => e.change === undefined)).toBe(true);
    expect(want.every((e) => typeof e.change === 'string')).toBe(true);
    expect(got.map(comparable)).toEqual(want.map(({ change: _, ...rest }) => comparable(rest)));
    expectSameTimes(got, want);
    expect(await bytes(local.read('sub/b.bin'))).toEqual(await readFile(join(dir, 'sub/b.bin')));
  });

  it("carries the host client's change tokens over bkt's batched DiffCopy", async () => {
    const dir = join(work, 'ctx');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'a.txt'), 'alpha');
    const host = createHostClient({ localDirs: { context: dir } });
    const { c, daemon } = await connected(transport, host, ['context']);
    expect(c.session.supports('/bkt.filesync.v1.FileSync/DiffCopy')).toBe(true);
    const [got] = await collect(daemon.localDir('context')!.stat());
    const [want] = await collect(host.localDir('context')!.stat());
    expect(got!.change).toBe(want!.change);
    expect(got!.change).toMatch(/^\d+:\d+:[\d.]+$/);
  });

  it('after one file of 2,000 changed, a receiver that remembers the last sync transfers only that file', async () => {
    const dir = join(work, 'ctx');
    for (let d = 0; d < 20; d++) {
      await mkdir(join(dir, `d${d}`), { recursive: true });
      for (let f = 0; f < 100; f++) await writeFile(join(dir, `d${d}`, `f${f}.txt`), `file ${d}/${f} `.repeat(50));
    }
    const client = countingClient(createHostClient({ localDirs: { context: dir } }));
    const { daemon } = await connected(transport, client, ['context']);
    const local = daemon.localDir('context')!;

    // The receiver: stat first, then read only what differs from what it remembers.
    const remembered = new Map<string, { size: number; mtimeMs: number; digest: string }>();
    const sync = async () => {
      let received = 0;
      const read: string[] = [];
      for (const e of await collect(local.stat())) {
        if ((e.mode & 0o170000) !== 0o100000) continue;
        const known = remembered.get(e.path);
        if (known && known.size === e.size && known.mtimeMs === e.mtimeMs) continue;
        const content = await bytes(local.read(e.path));
        received += content.length;
        read.push(e.path);
        remembered.set(e.path, { size: e.size, mtimeMs: e.mtimeMs, digest: createHash('sha256').update(content).digest('hex') });
      }
      return { received, read };
    };
    const first = await sync();
    expect(first.read).toHaveLength(2000);
    expect(client.sent.size).toBe(2000);

    client.sent.clear();
    const changed = 'changed content, a little longer than before';
    await writeFile(join(dir, 'd7/f42.txt'), changed);
    await utimes(join(dir, 'd7/f42.txt'), new Date(1_800_000_000_000), new Date(1_800_000_000_000));
    const second = await sync();
    expect(second.read).toEqual(['d7/f42.txt']);
    expect(second.received).toBe(changed.length);
    expect([...client.sent]).toEqual([['d7/f42.txt', changed.length]]);
    expect(remembered.get('d7/f42.txt')!.digest).toBe(createHash('sha256').update(changed).digest('hex'));
  });

  it('sends a large file whole, byte for byte', async () => {
    const dir = join(work, 'ctx');
    await mkdir(dir);
    const big = randomBytes(48 << 20);
    await writeFile(join(dir, 'big.bin'), big);
    const { daemon } = await connected(transport, createHostClient({ localDirs: { context: dir } }), ['context']);
    const local = daemon.localDir('context')!;
    const [entry] = await collect(local.stat());
    expect(entry).toMatchObject({ path: 'big.bin', size: big.length });
    const started = Date.now();
    const h = createHash('sha256');
    let n = 0;
    for await (const chunk of local.read('big.bin')) {
      h.update(chunk);
      n += chunk.length;
    }
    const seconds = (Date.now() - started) / 1000;
    expect(n).toBe(big.length);
    expect(h.digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
    console.log(`[${transport}] 48 MiB over DiffCopy: ${(48 / seconds).toFixed(0)} MiB/s`);
  });

  it('applies the selection: include, exclude (with `!`), followpaths and non-ASCII patterns', async () => {
    const dir = join(work, 'ctx');
    await mkdir(join(dir, 'src'), { recursive: true });
    await mkdir(join(dir, 'node_modules/x'), { recursive: true });
    await writeFile(join(dir, 'src/main.ts'), 'main');
    await writeFile(join(dir, 'src/keep.log'), 'keep');
    await writeFile(join(dir, 'src/drop.log'), 'drop');
    await writeFile(join(dir, 'node_modules/x/i.js'), 'x');
    await writeFile(join(dir, 'héllo wörld.txt'), 'unicode');
    await writeFile(join(dir, 'a,b.txt'), 'comma');
    await writeFile(join(dir, 'target.txt'), 'target');
    await symlink('target.txt', join(dir, 'pointer'));
    const { daemon } = await connected(transport, createHostClient({ localDirs: { context: dir } }), ['context']);
    const local = daemon.localDir('context')!;
    const paths = async (sel: Parameters<ClientLocalDir['stat']>[0]) => (await collect(local.stat(sel))).map((e) => e.path);

    expect(await paths({ include: ['src'], exclude: ['**/*.log', '!src/keep.log'] })).toEqual(['src', 'src/keep.log', 'src/main.ts']);
    expect(await paths({ include: ['héllo wörld.txt', 'a,b.txt'] })).toEqual(['a,b.txt', 'héllo wörld.txt']);
    expect(await paths({ exclude: ['node_modules', 'src', '*.txt', 'pointer'] })).toEqual([]);
    expect(await paths({ include: ['pointer'], followPaths: ['pointer'] })).toEqual(['pointer', 'target.txt']);
    expect((await bytes(local.read('héllo wörld.txt'))).toString()).toBe('unicode');
  });

  it('reads a file it was never asked to list (its own stream), and says NOT_FOUND for what is no regular file', async () => {
    const dir = join(work, 'ctx');
    await mkdir(join(dir, 'sub'), { recursive: true });
    await writeFile(join(dir, '.dockerignore'), 'node_modules\n');
    await symlink('.dockerignore', join(dir, 'link'));
    const { daemon } = await connected(transport, createHostClient({ localDirs: { context: dir } }), ['context']);
    const local = daemon.localDir('context')!;
    expect((await bytes(local.read('.dockerignore'))).toString()).toBe('node_modules\n');
    for (const path of ['missing', 'sub', 'link']) {
      const err = await bytes(local.read(path)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BktError);
      expect(err).toMatchObject({ code: 'NOT_FOUND', message: `local directory "context": no regular file "${path}"` });
    }
    // The same file twice from one stat: the second read has its own stream (fsutil serves an id once).
    await collect(local.stat());
    expect((await bytes(local.read('.dockerignore'))).toString()).toBe('node_modules\n');
    expect((await bytes(local.read('.dockerignore'))).toString()).toBe('node_modules\n');
  });

  it("knows a probed single file for the rest of the build: a probe that found none makes reads NOT_FOUND, a small file's bytes answer again, without a stream", async () => {
    const dir = join(work, 'ctx');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\n');
    await writeFile(join(dir, 'big'), Buffer.alloc(KNOWN_FILE_BYTES + 1, 7));
    const host = createHostClient({ localDirs: { context: dir } });
    let streams = 0;
    const counting: BuildClient = {
      ...host,
      localDir(name) {
        const inner = host.localDir(name)!;
        return { ...inner, stat: (sel, signal) => (streams++, inner.stat(sel, signal)), read: (p, signal) => inner.read(p, signal) };
      },
    };
    const { daemon } = await connected(transport, counting, ['context']);
    const local = daemon.localDir('context')!;
    // As a frontend reads .dockerignore (readClientFile: a probe, then the read), then the local source reads it.
    expect(await readClientFile(local, '.dockerignore')).toBeUndefined();
    expect(streams).toBe(1);
    await expect(bytes(local.read('.dockerignore'))).rejects.toMatchObject({ code: 'NOT_FOUND', message: 'local directory "context": no regular file ".dockerignore"' });
    expect(streams).toBe(1);
    // A file that is there: read through the probe's stream, then again from what was kept.
    expect((await readClientFile(local, 'Dockerfile'))?.toString()).toBe('FROM scratch\n');
    expect(streams).toBe(2);
    await writeFile(join(dir, 'Dockerfile'), 'FROM changed\n');
    expect((await bytes(local.read('Dockerfile'))).toString()).toBe('FROM scratch\n');
    expect(streams).toBe(2);
    // Read alone (its own probe): kept too; a larger file is not.
    await writeFile(join(dir, 'small'), 'small');
    expect((await bytes(local.read('small'))).toString()).toBe('small');
    expect((await bytes(local.read('small'))).toString()).toBe('small');
    expect(streams).toBe(3);
    expect((await bytes(local.read('big'))).length).toBe(KNOWN_FILE_BYTES + 1);
    expect((await bytes(local.read('big'))).length).toBe(KNOWN_FILE_BYTES + 1);
    expect(streams).toBe(5);
    // A whole-directory stat offers its entries afresh: its stream is read, not what was kept.
    await collect(local.stat());
    expect((await bytes(local.read('Dockerfile'))).toString()).toBe('FROM changed\n');
    // Another build's client knows nothing of this one's.
    const other = sessionBuildClient(open.at(-1)!.session, { localDirNames: ['context'] }).localDir('context')!;
    expect((await bytes(other.read('Dockerfile'))).toString()).toBe('FROM changed\n');
  });

  it('keeps one open stream per selection: reads after interleaved stats need no stream of their own', async () => {
    const dir = join(work, 'ctx');
    await mkdir(join(dir, 'a'), { recursive: true });
    await mkdir(join(dir, 'b'), { recursive: true });
    await writeFile(join(dir, 'a/1.txt'), 'a1');
    await writeFile(join(dir, 'b/2.txt'), 'b2');
    const host = createHostClient({ localDirs: { context: dir } });
    let streams = 0;
    const counting: BuildClient = {
      ...host,
      localDir(name) {
        const inner = host.localDir(name)!;
        return { ...inner, stat: (sel, signal) => (streams++, inner.stat(sel, signal)), read: (p, signal) => inner.read(p, signal) };
      },
    };
    const { daemon } = await connected(transport, counting, ['context']);
    const local = daemon.localDir('context')!;
    expect((await collect(local.stat({ include: ['a'] }))).map((e) => e.path)).toEqual(['a', 'a/1.txt']);
    expect((await collect(local.stat({ include: ['b'] }))).map((e) => e.path)).toEqual(['b', 'b/2.txt']);
    expect((await bytes(local.read('a/1.txt'))).toString()).toBe('a1');
    expect((await bytes(local.read('b/2.txt'))).toString()).toBe('b2');
    expect(streams).toBe(2);
    // The same selection again replaces its stream; the file can be read once more on the new one.
    await collect(local.stat({ include: ['a'] }));
    expect((await bytes(local.read('a/1.txt'))).toString()).toBe('a1');
    expect(streams).toBe(3);
  });

  it('a client failing mid-file fails that transfer alone: the session reads on', async () => {
    const dir = join(work, 'ctx');
    await mkdir(dir);
    await writeFile(join(dir, 'big.bin'), randomBytes(8 << 20));
    await writeFile(join(dir, 'small.txt'), 'small');
    const host = createHostClient({ localDirs: { context: dir } });
    const failing: BuildClient = {
      ...host,
      localDir(name) {
        const inner = host.localDir(name)!;
        return {
          ...inner,
          stat: (sel, signal) => inner.stat(sel, signal),
          async *read(path, signal) {
            let n = 0;
            for await (const chunk of inner.read(path, signal)) {
              yield chunk;
              if ((n += chunk.length) >= 1 << 20 && path === 'big.bin') throw new Error('disk on fire');
            }
          },
        };
      },
    };
    const { c, daemon } = await connected(transport, failing, ['context']);
    const local = daemon.localDir('context')!;
    await collect(local.stat());
    const err = await bytes(local.read('big.bin')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BktError);
    expect((err as Error).message).toBe('local directory "context": the client answered UNKNOWN: disk on fire');
    expect(c.session.isClosed).toBe(false);
    expect((await collect(local.stat())).map((e) => e.path)).toEqual(['big.bin', 'small.txt']);
    expect((await bytes(local.read('small.txt'))).toString()).toBe('small');
  });

  it('a directory name the client does not have is a clear NOT_FOUND error', async () => {
    const { daemon } = await connected(transport, createHostClient({ localDirs: {} }), ['context']);
    const err = await collect(daemon.localDir('context')!.stat()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BktError);
    expect(err).toMatchObject({ code: 'NOT_FOUND' });
    expect((err as Error).message).toBe('local directory "context": the client has no such directory (no access allowed to dir "context")');
    expect(daemon.localDir('other')).toBeUndefined();
    expect(daemon.localDirNames()).toEqual(['context']);
  });

  it('a directory that is gone on the client fails with the client\'s error', async () => {
    const { daemon } = await connected(transport, createHostClient({ localDirs: { context: join(work, 'gone') } }), ['context']);
    const err = await collect(daemon.localDir('context')!.stat()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'NOT_FOUND' });
    expect((err as Error).message).toContain(`local directory "context": `);
    expect((err as Error).message).toContain(`${join(work, 'gone')} does not exist`);
  });
});

describe('probedPath: the one path a selection probes for', () => {
  it('a single literal include (metacharacters escaped), no exclude', () => {
    expect(probedPath({ include: ['.dockerignore'], followPaths: ['.dockerignore'] })).toBe('.dockerignore');
    expect(probedPath({ include: ['sub/Dockerfile'] })).toBe('sub/Dockerfile');
    expect(probedPath({ include: ['a\\*b\\[1\\]\\?\\\\'] })).toBe('a*b[1]?\\');
  });

  it('nothing for patterns, several includes, excludes, or paths that are not clean and relative', () => {
    for (const include of [['*.txt'], ['a?'], ['[ab]'], ['a', 'b'], [], ['/abs'], ['./x'], ['a//b'], ['a/../b'], ['dir/'], ['!x'], ['a\\']]) {
      expect(probedPath({ include }), JSON.stringify(include)).toBeUndefined();
    }
    expect(probedPath({ include: ['x'], exclude: ['y'] })).toBeUndefined();
    expect(probedPath({})).toBeUndefined();
  });
});
