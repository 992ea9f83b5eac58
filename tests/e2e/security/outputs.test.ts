/**
 * Output destinations that are not regular files are written into, never
 * replaced: a tar, an OCI or docker archive, `--metadata-file` and
 * `--iidfile` aimed at a character device (a null device made here, then
 * the real `/dev/null`) or a FIFO leave it a device or a FIFO (the FIFO's
 * reader gets the bytes); a symlinked file keeps its link; a directory, or a
 * device given to a directory exporter, is refused with a clear error.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, copyOp, definition, removeDir, sourceOp, tempDir } from '../helpers.js';

let work: string;
let context: string;
let nullDevice: string;
const ctxSource = sourceOp('local://context');
const copyHello = copyOp(ctxSource, '/hello.txt', '/hello.txt');
const def = definition([ctxSource, copyHello], copyHello);

beforeAll(async () => {
  work = await tempDir('security-outputs');
  context = join(work, 'ctx');
  await mkdir(context);
  await writeFile(join(context, 'hello.txt'), 'hello from the build\n');
  await writeFile(join(work, 'def.pb'), def);
  // A null device of our own (1:3, as /dev/null): if bkt replaced it, the machine's /dev/null is untouched.
  nullDevice = join(work, 'null');
  execFileSync('mknod', [nullDevice, 'c', '1', '3']);
});

afterAll(async () => {
  if (work) await removeDir(work);
});

const build = (args: string[]) => bkt(['build', '--llb', 'def.pb', '--local', `context=${context}`, '--root', join(work, 'store'), ...args], { cwd: work });

async function isNullDevice(path: string): Promise<boolean> {
  const st = await lstat(path);
  return st.isCharacterDevice() && st.rdev === 0x103;
}

/** Reads the FIFO `path` to its end while `write` runs. */
async function throughFifo(path: string, write: () => Promise<{ code: number; stderr: string }>): Promise<{ bytes: Buffer; code: number; stderr: string }> {
  const chunks: Buffer[] = [];
  const reading = new Promise<void>((resolve, reject) => {
    const r = createReadStream(path);
    r.on('data', (c) => chunks.push(c as Buffer));
    r.on('end', resolve);
    r.on('error', reject);
  });
  const r = await write();
  await reading;
  return { bytes: Buffer.concat(chunks), code: r.code, stderr: r.stderr };
}

const tarNames = (tarFile: string) => execFileSync('tar', ['-tf', tarFile], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();

describe('a character device as a destination stays a device', () => {
  for (const output of ['type=tar', 'type=oci', 'type=docker']) {
    it(`-o ${output},dest=<null device>`, async () => {
      const r = await build(['-o', `${output},dest=${nullDevice}`]);
      expect(r.stderr).not.toMatch(/^error/m);
      expect(r.code).toBe(0);
      expect(await isNullDevice(nullDevice)).toBe(true);
    });
  }

  it('--metadata-file and --iidfile <null device>', async () => {
    const r = await build(['-o', `type=oci,dest=${join(work, 'image.tar')}`, '--metadata-file', nullDevice, '--iidfile', nullDevice]);
    expect(r.code).toBe(0);
    expect(await isNullDevice(nullDevice)).toBe(true);
  });

  it("the machine's /dev/null (after the same writes proved safe on a device of our own)", async () => {
    expect(await isNullDevice(nullDevice)).toBe(true);
    const r = await build(['-o', 'type=tar,dest=/dev/null', '--metadata-file', '/dev/null']);
    expect(r.code).toBe(0);
    expect(await isNullDevice('/dev/null')).toBe(true);
  });
});

describe('a FIFO as a destination stays a FIFO and its reader gets the bytes', () => {
  it('-o type=tar,dest=<fifo>', async () => {
    const fifo = join(work, 'tar.fifo');
    execFileSync('mkfifo', [fifo]);
    const r = await throughFifo(fifo, () => build(['-o', `type=tar,dest=${fifo}`]));
    expect(r.code).toBe(0);
    expect((await lstat(fifo)).isFIFO()).toBe(true);
    const received = join(work, 'received.tar');
    await writeFile(received, r.bytes);
    expect(tarNames(received)).toEqual(['hello.txt']);
  });

  it('--metadata-file <fifo>', async () => {
    const fifo = join(work, 'meta.fifo');
    execFileSync('mkfifo', [fifo]);
    const r = await throughFifo(fifo, () => build(['-o', `type=oci,dest=${join(work, 'image2.tar')}`, '--metadata-file', fifo]));
    expect(r.code).toBe(0);
    expect((await lstat(fifo)).isFIFO()).toBe(true);
    expect(JSON.parse(r.bytes.toString())['containerimage.digest']).toMatch(/^sha256:/);
  });
});

describe('regular files and symlinks', () => {
  it('a symlinked tar destination keeps its link; the target file gets the tar', async () => {
    await writeFile(join(work, 'target.tar'), 'old contents');
    await symlink('target.tar', join(work, 'link.tar'));
    const r = await build(['-o', `type=tar,dest=${join(work, 'link.tar')}`]);
    expect(r.code).toBe(0);
    expect(await readlink(join(work, 'link.tar'))).toBe('target.tar');
    expect(tarNames(join(work, 'target.tar'))).toEqual(['hello.txt']);
  });

  it('an existing regular file is replaced whole', async () => {
    const dest = join(work, 'replaced.tar');
    await writeFile(dest, 'x'.repeat(100_000));
    const r = await build(['-o', `type=tar,dest=${dest}`]);
    expect(r.code).toBe(0);
    expect(tarNames(dest)).toEqual(['hello.txt']);
    expect((await readFile(dest)).length).toBeLessThan(100_000);
  });
});

describe('destinations that cannot be written safely are refused', () => {
  it('a directory as a tar destination', async () => {
    const dir = join(work, 'a-dir');
    await mkdir(dir);
    const r = await build(['-o', `type=tar,dest=${dir}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`tar exporter: dest "${dir}" is a directory`);
    expect((await lstat(dir)).isDirectory()).toBe(true);
  });

  it('a device as a local (directory) destination', async () => {
    const r = await build(['-o', `type=local,dest=${nullDevice}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/local exporter: dest ".*null" exists and is not a directory/);
    expect(await isNullDevice(nullDevice)).toBe(true);
  });

  it('a device as an oci directory destination (tar=false)', async () => {
    const r = await build(['-o', `type=oci,tar=false,dest=${nullDevice}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/oci exporter: dest ".*null" exists and is not a directory/);
    expect(await isNullDevice(nullDevice)).toBe(true);
  });
});
