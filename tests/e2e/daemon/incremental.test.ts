/**
 * Incremental context transfer through bktd (issue 11): a Dockerfile build
 * whose 2,000-file context travels over the session of a client process;
 * after one file changes, the rebuild's FileSync sender sends only that
 * file's bytes (counted in the client), the local source's sync index in
 * the daemon's store learns only that file's new digest (the others are
 * trusted from their unchanged stat, never read again), and the build sees
 * the new content. Unchanged, a rebuild sends no byte of the context.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { startClient, type Reads } from './clients.js';
import { startBktd, type RunningDaemon } from './lib.js';

let work: string;
let root: string;
let address: string;
let daemon: RunningDaemon;
let registry: RegistryServer;
let busybox: PushedImage;
let context: string;
let dockerfileDir: string;

const DIRS = 20;
const FILES = 100;
const OLD = new Date(1_600_000_000_000);

beforeAll(async () => {
  work = await tempDir('daemon-incremental');
  root = join(work, 'root');
  context = join(work, 'context');
  dockerfileDir = join(work, 'dockerfile');
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  for (let d = 0; d < DIRS; d++) {
    await mkdir(join(context, `d${d}`), { recursive: true });
    for (let f = 0; f < FILES; f++) {
      const file = join(context, `d${d}`, `f${f}.txt`);
      await writeFile(file, `file ${d}/${f}\n`.repeat(40));
      // Older than the sync's racy window: an unchanged stat is trusted.
      await utimes(file, OLD, OLD);
    }
  }
  await mkdir(dockerfileDir);
  await writeFile(
    join(dockerfileDir, 'Dockerfile'),
    [
      `FROM ${busybox.reference} AS ctx`,
      'COPY . /ctx',
      'RUN find /ctx -type f | wc -l > /count && cat /ctx/d7/f42.txt > /seen',
      'FROM scratch',
      'COPY --from=ctx /count /seen /',
      '',
    ].join('\n'),
  );
  daemon = await startBktd(['--addr', `unix://${join(work, 'bktd.sock')}`, '--root', root], { cwd: work });
  address = `unix://${join(work, 'bktd.sock')}`;
});

afterAll(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  await registry?.stop();
  if (work) await removeDir(work);
});

let builds = 0;

/** One build by a new client process (same shared key: the same client directory); what its sender sent and what the build saw. */
async function build(): Promise<{ context: Record<string, number>; seen: string; count: string }> {
  const out = join(work, `out-${++builds}`);
  const client = await startClient(work, {
    address,
    sharedKey: 'e2e-incremental-client',
    localDirs: { context, dockerfile: dockerfileDir },
    frontend: 'dockerfile.v0',
    frontendAttrs: { filename: 'Dockerfile' },
    exporters: [{ Type: 'local', Attrs: { dest: out } }],
    outputs: { 0: { type: 'dir', dest: out } },
  });
  const done = await client.done();
  expect(done.ok, JSON.stringify(done).slice(0, 2000)).toBe(true);
  return {
    context: sent(done.reads).context ?? {},
    seen: await readFile(join(out, 'seen'), 'utf8'),
    count: (await readFile(join(out, 'count'), 'utf8')).trim(),
  };
}

/** Only the reads that sent bytes (a read of an absent `.dockerignore` sends none). */
function sent(reads: Reads): Reads {
  return Object.fromEntries(Object.entries(reads).map(([dir, paths]) => [dir, Object.fromEntries(Object.entries(paths).filter(([, n]) => n > 0))]));
}

interface IndexedFile {
  size: number;
  mtimeMs: number;
  digest: string;
}

/** The daemon's sync index of the context (the local source's one record): file → stat and digest. */
async function contextIndex(): Promise<Record<string, IndexedFile>> {
  const dir = join(root, 'source-local');
  const indexes: Record<string, IndexedFile>[] = [];
  for (const id of await readdir(dir)) {
    const text = await readFile(join(dir, id, 'index.json'), 'utf8').catch(() => undefined);
    if (!text) continue;
    const files = (JSON.parse(text) as { files: Record<string, IndexedFile> }).files;
    if (Object.keys(files).some((p) => p.startsWith('d7/'))) indexes.push(files);
  }
  expect(indexes).toHaveLength(1);
  return indexes[0]!;
}

const sha256 = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

it('after one file of a 2,000-file context changes, a rebuild through the daemon transfers only that file and re-hashes only it', async () => {
  const first = await build();
  expect(Object.keys(first.context)).toHaveLength(DIRS * FILES);
  expect(first.context['d7/f42.txt']).toBe('file 7/42\n'.length * 40);
  expect(first.count).toBe(String(DIRS * FILES));
  const before = await contextIndex();
  expect(Object.keys(before)).toHaveLength(DIRS * FILES);
  expect(before['d7/f42.txt']!.digest).toBe(sha256('file 7/42\n'.repeat(40)));

  await writeFile(join(context, 'd7/f42.txt'), 'changed\n');
  const later = new Date(1_650_000_000_000);
  await utimes(join(context, 'd7/f42.txt'), later, later);
  const second = await build();
  expect(second.context).toEqual({ 'd7/f42.txt': 'changed\n'.length });
  expect(second.seen).toBe('changed\n');
  expect(second.count).toBe(String(DIRS * FILES));
  // The index: the changed file's new stat and digest; every other entry as it was (its digest taken from the index, not re-hashed).
  const after = await contextIndex();
  expect(after['d7/f42.txt']).toMatchObject({ size: 8, mtimeMs: later.getTime(), digest: sha256('changed\n') });
  const { ['d7/f42.txt']: _a, ...othersAfter } = after;
  const { ['d7/f42.txt']: _b, ...othersBefore } = before;
  expect(othersAfter).toEqual(othersBefore);

  // Unchanged: not one byte of the context travels.
  const third = await build();
  expect(third.context).toEqual({});
  expect(third.seen).toBe('changed\n');
});
