/**
 * One store, many processes (issue 9, scope 3) and the store's usage
 * contract (scope 2), through the built CLI with real runc:
 * - two `bkt build` on one --root started together, overlapping steps, one
 *   with a `RUN sleep 2`: both exit 0 with their outputs;
 * - `bkt du` and `bkt prune --all` while a build runs: they succeed and the
 *   build does too;
 * - 10 builds at once, each bounded by timeout(1): all succeed;
 * - `bkt du`'s total is within 1 % of `du -sb` of the root;
 * - `bkt prune --all` leaves no record, snapshot or blob;
 * - a `bkt prune` killed (SIGKILL) midway leaves a store that opens and is
 *   consistent (rows and directories agree), and the next prune empties it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';
import { duTotal, entries, runBkt, snapshotIds, writeDockerfile, writeRootfsContext } from './lib.js';

let work: string;
let ctx: string;

beforeAll(async () => {
  work = await tempDir('store');
  ctx = join(work, 'ctx');
  await writeRootfsContext(ctx);
});

afterAll(async () => {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (point?.startsWith(`${work}/`)) execFileSync('umount', ['-l', point], { stdio: 'ignore' });
  }
  await removeDir(work);
});

/** `bkt build` of Dockerfile `file` in ctx into `out`, as a process. */
function build(root: string, file: string, out: string, onStderr?: (all: string) => void) {
  return runBkt(['build', '--root', root, '--progress', 'plain', '-f', file, '-o', `type=local,dest=${out}`, ctx], { cwd: work, onStderr });
}

describe('many builds, one store', () => {
  it('two builds started together on one root (overlapping steps, one sleeping 2 s) both succeed', async () => {
    const root = join(work, 'two');
    await writeDockerfile(join(work, 'A.Dockerfile'), ['echo shared > /shared.txt', 'echo a > /a.txt']);
    await writeDockerfile(join(work, 'B.Dockerfile'), ['echo shared > /shared.txt', 'sleep 2 && echo b > /b.txt']);
    const [a, b] = await Promise.all([build(root, 'A.Dockerfile', join(work, 'outA')).done, build(root, 'B.Dockerfile', join(work, 'outB')).done]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(await readFile(join(work, 'outA/a.txt'), 'utf8')).toBe('a\n');
    expect(await readFile(join(work, 'outA/shared.txt'), 'utf8')).toBe('shared\n');
    expect(await readFile(join(work, 'outB/b.txt'), 'utf8')).toBe('b\n');
    expect(await readFile(join(work, 'outB/shared.txt'), 'utf8')).toBe('shared\n');
  });

  it('bkt du and bkt prune --all during a build succeed, and the build does too', async () => {
    const root = join(work, 'during');
    await writeDockerfile(join(work, 'slow.Dockerfile'), ['echo before > /before.txt', 'echo step-is-running; sleep 3; echo done > /done.txt']);
    let running!: () => void;
    const started = new Promise<void>((r) => (running = r));
    const b = build(root, 'slow.Dockerfile', join(work, 'outSlow'), (all) => {
      if (/\d step-is-running/.test(all)) running();
    });
    await Promise.race([started, b.done.then((r) => Promise.reject(new Error(`build ended before its step ran:\n${r.stderr}`)))]);
    const du = await bkt(['du', '--root', root], { cwd: work });
    expect(du.code, du.stderr).toBe(0);
    expect(du.stdout).toMatch(/^Total: +\S+$/m);
    const prune = await bkt(['prune', '--all', '--root', root], { cwd: work });
    expect(prune.code, prune.stderr).toBe(0);
    const r = await b.done;
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(join(work, 'outSlow/before.txt'), 'utf8')).toBe('before\n');
    expect(await readFile(join(work, 'outSlow/done.txt'), 'utf8')).toBe('done\n');
  });

  it('10 builds at once on one root, each bounded by timeout(1), all succeed', async () => {
    const root = join(work, 'ten');
    const runs = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        await writeDockerfile(join(work, `n${i}.Dockerfile`), ['echo shared > /shared.txt', `echo ${i} > /n.txt`]);
        return build(root, `n${i}.Dockerfile`, join(work, `out-n${i}`)).done;
      }),
    );
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    for (let i = 0; i < 10; i++) expect(await readFile(join(work, `out-n${i}/n.txt`), 'utf8')).toBe(`${i}\n`);
  });
});

describe('usage and prune', () => {
  const root = () => join(work, 'usage');

  it("bkt du's total is within 1 % of the bytes under the root (du -sb)", async () => {
    await writeDockerfile(join(work, 'big.Dockerfile'), [
      'dd if=/dev/urandom of=/big bs=1048576 count=24 2>/dev/null',
      '--mount=type=cache,target=/cache dd if=/dev/urandom of=/cache/data bs=1048576 count=8 2>/dev/null',
    ]);
    const r = await build(root(), 'big.Dockerfile', join(work, 'outBig')).done;
    expect(r.code, r.stderr).toBe(0);
    const du = await bkt(['du', '--root', root()], { cwd: work });
    expect(du.code, du.stderr).toBe(0);
    const reported = duTotal(du.stdout);
    // Apparent bytes of everything under the root, a hard link once (du's default).
    const actual = Number(execFileSync('du', ['-sb', root()], { encoding: 'utf8' }).split('\t')[0]);
    console.log(`du total ${reported} B, du -sb of the root ${actual} B`);
    expect(Math.abs(reported - actual) / actual).toBeLessThan(0.01);
  });

  it('bkt prune --all leaves no record, snapshot or blob', async () => {
    const all = await bkt(['prune', '--all', '--root', root()], { cwd: work });
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toContain('cachemounts/');
    const du = await bkt(['du', '--verbose', '--root', root()], { cwd: work });
    expect(du.stdout).not.toMatch(/^ID:/m);
    expect(await entries(join(root(), 'snapshots'))).toEqual([]);
    expect(await entries(join(root(), 'content/blobs/sha256'))).toEqual([]);
    expect((await entries(join(root(), 'cachemounts'))).filter((n) => !n.startsWith('.'))).toEqual([]);
    const db = new Database(join(root(), 'metadata.db'), { readonly: true });
    try {
      for (const table of ['snapshots', 'records', 'blob_refs', 'cache_keys', 'leases']) {
        expect((db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n, table).toBe(0);
      }
    } finally {
      db.close();
    }
  });

  it('a prune killed (SIGKILL) midway leaves a store that opens and is consistent', async () => {
    const root = join(work, 'killed');
    // Many snapshots with many files: a prune takes a while.
    await mkdir(join(ctx, 'many'), { recursive: true });
    for (let i = 0; i < 1500; i++) await writeFile(join(ctx, 'many', `f${i}`), `file ${i}\n`);
    await writeFile(
      join(work, 'many.Dockerfile'),
      ['FROM scratch', ...Array.from({ length: 8 }, (_, i) => `COPY many/ /copy${i}/`), ''].join('\n'),
    );
    const r = await build(root, 'many.Dockerfile', join(work, 'outMany')).done;
    expect(r.code, r.stderr).toBe(0);
    const before = (await entries(join(root, 'snapshots'))).length;
    expect(before).toBeGreaterThanOrEqual(8);

    const prune = runBkt(['prune', '--all', '--root', root], { cwd: work, timeoutS: 0 });
    // Kill once it has removed something, or after 3 s.
    for (let i = 0; i < 300 && (await entries(join(root, 'snapshots'))).length === before; i++) await new Promise((res) => setTimeout(res, 10));
    process.kill(prune.pid()!, 'SIGKILL');
    await prune.done;
    const left = (await entries(join(root, 'snapshots'))).length;
    console.log(`prune killed: ${before} snapshot dirs before, ${left} after`);

    // It opens (du) and rows and directories agree.
    const du = await bkt(['du', '--verbose', '--root', root], { cwd: work });
    expect(du.code, du.stderr).toBe(0);
    expect(snapshotIds(du.stdout)).toEqual(await entries(join(root, 'snapshots')));
    const db = new Database(join(root, 'metadata.db'), { readonly: true });
    try {
      const rows = db.prepare('SELECT id, parent FROM snapshots').all() as { id: string; parent: string | null }[];
      const ids = new Set(rows.map((row) => row.id));
      for (const row of rows) {
        expect(existsSync(join(root, 'snapshots', row.id, 'fs'))).toBe(true);
        if (row.parent) expect(ids.has(row.parent)).toBe(true);
      }
      for (const { snapshot } of db.prepare('SELECT snapshot FROM cache_results WHERE snapshot IS NOT NULL').all() as { snapshot: string }[]) {
        expect(ids.has(snapshot)).toBe(true);
      }
    } finally {
      db.close();
    }
    // The next prune finishes the job; the store builds again.
    const again = await bkt(['prune', '--all', '--root', root], { cwd: work });
    expect(again.code, again.stderr).toBe(0);
    expect(await entries(join(root, 'snapshots'))).toEqual([]);
    const rebuilt = await build(root, 'many.Dockerfile', join(work, 'outMany2')).done;
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    expect(await readFile(join(work, 'outMany2/copy7/f1499'), 'utf8')).toBe('file 1499\n');
  });
});
