/**
 * The incremental COPY through bktd when two clients build the same
 * Dockerfile in turn, each over its own directory (bench/daemon's two
 * clients, two checkouts): each client's `COPY . /ctx` links its context's
 * files into its result, and its re-run after one of its files changed takes
 * the unchanged files from that client's own earlier result (hard links in
 * the daemon's store: one inode for the context's file and both results'),
 * never from the other client's, and the result holds the new content.
 */
import { lstat, mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { startClient } from './clients.js';
import { startBktd, type RunningDaemon } from './lib.js';

let work: string;
let root: string;
let address: string;
let daemon: RunningDaemon;
let registry: RegistryServer;
let busybox: PushedImage;
let dockerfileDir: string;

const DIRS = 5;
const FILES = 40;
const OLD = new Date(1_600_000_000_000);

/** A client's directory: files named after the client, so that each client's files are told apart in the store. */
async function makeContext(name: string): Promise<string> {
  const dir = join(work, `context-${name}`);
  for (let d = 0; d < DIRS; d++) {
    await mkdir(join(dir, `d${d}`), { recursive: true });
    for (let f = 0; f < FILES; f++) {
      const file = join(dir, `d${d}`, `${name}-${f}.txt`);
      await writeFile(file, `file ${d}/${f} of ${name}\n`.repeat(10));
      await utimes(file, OLD, OLD);
    }
  }
  return dir;
}

beforeAll(async () => {
  work = await tempDir('daemon-incremental-copy');
  root = join(work, 'root');
  dockerfileDir = join(work, 'dockerfile');
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  await mkdir(dockerfileDir);
  await writeFile(join(dockerfileDir, 'Dockerfile'), `FROM ${busybox.reference}\nCOPY . /ctx\n`);
  daemon = await startBktd(['--addr', `unix://${join(work, 'bktd.sock')}`, '--root', root], { cwd: work });
  address = `unix://${join(work, 'bktd.sock')}`;
});

afterAll(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  await registry?.stop();
  if (work) await removeDir(work);
});

let builds = 0;

/** One build of `context` by a new client process of `name` (its shared key); the exported root filesystem's directory. */
async function build(name: string, context: string): Promise<string> {
  const out = join(work, `out-${++builds}`);
  const client = await startClient(work, {
    address,
    sharedKey: `e2e-incremental-copy-${name}`,
    localDirs: { context, dockerfile: dockerfileDir },
    frontend: 'dockerfile.v0',
    frontendAttrs: { filename: 'Dockerfile' },
    exporters: [{ Type: 'local', Attrs: { dest: out } }],
    outputs: { 0: { type: 'dir', dest: out } },
  });
  const done = await client.done();
  expect(done.ok, JSON.stringify(done).slice(0, 2000)).toBe(true);
  return out;
}

/**
 * The files of the daemon's store named `<client>-*.txt`, by inode: how many
 * of them each inode has (a context's file linked into COPY results has
 * several). Fails when an inode is also a file of another path (a client's
 * file linked from another's, or from another of its files) or has links the
 * store does not show.
 */
async function inodesOf(name: string): Promise<number[]> {
  const byInode = new Map<number, { names: string[]; nlink: number }>();
  const visit = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await visit(p);
      else if (e.isFile() && /^[ab]-\d+\.txt$/.test(e.name)) {
        const st = await lstat(p);
        const seen = byInode.get(st.ino) ?? { names: [], nlink: st.nlink };
        seen.names.push(`${basename(dir)}/${e.name}`);
        byInode.set(st.ino, seen);
      }
    }
  };
  await visit(root);
  const counts: number[] = [];
  for (const [ino, { names, nlink }] of byInode) {
    if (!names.some((n) => n.includes(`/${name}-`))) continue;
    expect(names.every((n) => n === names[0]), `inode ${ino}: ${names.join(', ')}`).toBe(true);
    expect(names.length, `inode ${ino}: names found against its link count`).toBe(nlink);
    counts.push(names.length);
  }
  return counts.sort((x, y) => x - y);
}

/** `count` times `value`. */
const times = (count: number, value: number) => Array.from({ length: count }, () => value);

it('each client re-running the COPY takes its unchanged files from its own earlier result, the clients building in turn', async () => {
  const a = await makeContext('a');
  const b = await makeContext('b');
  await build('a', a);
  await build('b', b);
  // Each file: the context's and the result's name of one inode.
  for (const name of ['a', 'b']) expect(await inodesOf(name)).toEqual(times(DIRS * FILES, 2));

  const later = new Date(1_650_000_000_000);
  for (const [name, dir] of [['a', a], ['b', b]] as const) {
    await writeFile(join(dir, 'd3', `${name}-7.txt`), `changed ${name}\n`);
    await utimes(join(dir, 'd3', `${name}-7.txt`), later, later);
  }
  const outA = await build('a', a);
  const outB = await build('b', b);
  for (const [name, out] of [['a', outA], ['b', outB]] as const) {
    expect(await readFile(join(out, 'ctx/d3', `${name}-7.txt`), 'utf8')).toBe(`changed ${name}\n`);
    expect(await readFile(join(out, 'ctx/d1', `${name}-2.txt`), 'utf8')).toBe(`file 1/2 of ${name}\n`.repeat(10));
    expect((await readdir(join(out, 'ctx/d3'))).length).toBe(FILES);
    // Every unchanged file: three names of one inode, the context's, the earlier result's and the new one's; the changed
    // file's two versions: two names each (the context layer's and the result's).
    expect(await inodesOf(name)).toEqual([...times(2, 2), ...times(DIRS * FILES - 1, 3)]);
  }
});
