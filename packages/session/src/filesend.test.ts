/**
 * Outputs sent by the daemon to the client's targets over the session
 * (FileSend/DiffCopy): a directory as fsutil packets into the host client's
 * output directory, a file or stdout as byte chunks; over both transports.
 */
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BktError, type FileStat } from '@bkt/core';
import { createHostClient } from '@bkt/fsutil';
import type { OutputTargets } from './client/filesend.js';
import { sessionBuildClient } from './daemon/build-client.js';
import { connect, type Connected, type Transport } from './session.test-util.js';

let work: string;
const open: Connected[] = [];

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-session-filesend-'));
});
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
  await rm(work, { recursive: true, force: true });
});

const uid = process.getuid!();
const gid = process.getgid!();

async function connected(transport: Transport, outputs: OutputTargets, stdout?: NodeJS.WritableStream) {
  const c = await connect(transport, createHostClient({ cwd: work, stdout }), { outputs });
  open.push(c);
  const targets = new Map<string, number>([['local exporter', 0], ['tar exporter: dest', 1], ['stdout', 2]]);
  return { c, daemon: sessionBuildClient(c.session, { localDirNames: [], outputTarget: ({ what }) => ({ id: targets.get(what) ?? 99, metadata: { 'image.name': 'example' } }) }) };
}

const entry = (path: string, mode: number, extra: Partial<FileStat> = {}): FileStat => ({ path, mode, uid: 1234, gid: 5678, size: 0, mtimeMs: 1_600_000_000_000, ...extra });
const content = (bytes: Buffer) => ({ stream: async function* () { yield bytes; } });

describe.each<Transport>(['in-memory', 'grpc'])('FileSend over %s', (transport) => {
  it('writes a directory output into the client target the exporter id names, owners made the client\'s', async () => {
    const { daemon } = await connected(transport, { 0: { type: 'dir', dest: 'out' } });
    const big = randomBytes(5 << 20);
    const out = await daemon.openDir('ignored-by-the-client', { what: 'local exporter' });
    await out.write(entry('bin', 0o40755));
    await out.write(entry('bin/tool', 0o100755, { size: 6 }), content(Buffer.from('binary')));
    await out.write(entry('big.dat', 0o100644, { size: big.length }), content(big));
    await out.write(entry('empty', 0o100600));
    await out.write(entry('link', 0o120777, { linkname: 'bin/tool' }));
    await out.write(entry('same', 0o100755, { linkname: 'bin/tool' }));
    await out.commit();

    const dest = join(work, 'out');
    expect((await readdir(dest)).sort()).toEqual(['big.dat', 'bin', 'empty', 'link', 'same']);
    expect(await readFile(join(dest, 'bin/tool'), 'utf8')).toBe('binary');
    expect(createHash('sha256').update(await readFile(join(dest, 'big.dat'))).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
    expect((await stat(join(dest, 'empty'))).size).toBe(0);
    expect(await readlink(join(dest, 'link'))).toBe('bin/tool');
    const tool = await lstat(join(dest, 'bin/tool'));
    expect(tool.mode & 0o7777).toBe(0o755);
    expect((await lstat(join(dest, 'same'))).ino).toBe(tool.ino);
    expect([tool.uid, tool.gid]).toEqual([uid, gid]);
    expect((await lstat(join(dest, 'bin'))).mtimeMs).toBe(1_600_000_000_000);
    expect(await existsNot(join(work, 'ignored-by-the-client'))).toBe(true);
  });

  it('writes a file output to the client target, its name from the exporter metadata; and stdout', async () => {
    const stdout = new PassThrough();
    const printed: Buffer[] = [];
    stdout.on('data', (c: Buffer) => printed.push(c));
    const { daemon } = await connected(
      transport,
      { 1: { type: 'file', dest: (md) => `${md['image.name']}.tar` }, 2: { type: 'stdout' } },
      stdout,
    );
    const data = randomBytes(7 << 20); // more than one 3 MiB chunk
    const file = await daemon.openFile('x', { what: 'tar exporter: dest' });
    file.stream.write(data.subarray(0, 1000));
    file.stream.write(data.subarray(1000));
    await file.commit();
    expect((await readFile(join(work, 'example.tar'))).equals(data)).toBe(true);

    const out = await daemon.openStdout({ what: 'stdout' });
    out.stream.end('to stdout');
    await out.commit();
    expect(Buffer.concat(printed).toString()).toBe('to stdout');
  });

  it('an aborted file output leaves nothing behind on the client', async () => {
    const { daemon } = await connected(transport, { 1: { type: 'file', dest: 'result.tar' } });
    const file = await daemon.openFile('x', { what: 'tar exporter: dest' });
    file.stream.write(Buffer.from('partial'));
    await new Promise((r) => setTimeout(r, 50));
    await file.abort();
    // The client learns of the abort over the wire and removes its partial file after that: poll, bounded.
    const deadline = Date.now() + 5000;
    while ((await readdir(work)).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(await readdir(work)).toEqual([]);
  });

  it('an output for an exporter the client has no target for fails, naming it', async () => {
    const { daemon } = await connected(transport, { 0: { type: 'dir', dest: 'out' } });
    const file = await daemon.openFile('x', { what: 'unknown' });
    file.stream.end('bytes');
    const err = await file.commit().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BktError);
    expect((err as Error).message).toBe('unknown: the client answered NOT_FOUND: exporter 99 not found');
  });

  it('a client that accepts no outputs is told apart', async () => {
    const { daemon } = await connected(transport, {});
    const err = await daemon.openDir('out', { what: 'local exporter' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'UNIMPLEMENTED' });
    expect((err as Error).message).toBe("local exporter: the session's client accepts no outputs (it does not serve /moby.filesync.v1.FileSend/DiffCopy)");
  });
});

function existsNot(path: string): Promise<boolean> {
  return lstat(path).then(
    () => false,
    () => true,
  );
}

it('a directory output whose target cannot be made fails the transfer with the client\'s reason', async () => {
  await writeFile(join(work, 'file'), 'not a dir');
  await mkdir(join(work, 'x'));
  const { daemon } = await connected('in-memory', { 0: { type: 'dir', dest: 'file' } });
  const out = await daemon.openDir('file', { what: 'local exporter' });
  const err = await out.write(entry('a', 0o100644, { size: 1 }), content(Buffer.from('a'))).then(() => out.commit()).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(BktError);
  expect((err as Error).message).toContain('dest "' + join(work, 'file') + '" exists and is not a directory');
});
