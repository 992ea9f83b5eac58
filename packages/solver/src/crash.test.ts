import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { expect, it } from 'vitest';
import { createBkt } from '@bkt/core';
import { openSolver } from './solver.js';
import { mountsUnder } from '@bkt/fsutil';
import { testPlugin } from './graphs.test-util.js';
import { bigCopyGraph } from './testdata/graphs.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Spawns the child builder; resolves once it printed `copying` and has a snapshot being written, then kills it. */
async function runAndKill(root: string, contextDir: string): Promise<string> {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'jiti/register', join(here, 'testdata/crash-child.ts'), root, contextDir], {
    cwd: join(here, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const deadline = Date.now() + 60_000;
  while (!out.includes('copying')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`child did not start copying: ${out} ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  // Kill once the copy op writes through its overlay mount (or after a while, wherever it is then).
  const killAt = Date.now() + 4000;
  while (Date.now() < killAt && (await mountsUnder(root)).length === 0) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGKILL');
  await exited;
  expect(out).not.toContain('finished');
  return out;
}

it('a store killed (SIGKILL) in the middle of a large copy opens consistent and builds again', async () => {
  const root = await mkdtemp(join(tmpdir(), 'bkt-crash-'));
  const contextDir = await mkdtemp(join(tmpdir(), 'bkt-crash-ctx-'));
  try {
    for (let d = 0; d < 20; d++) {
      await mkdir(join(contextDir, `d${d}`));
      for (let f = 0; f < 40; f++) await writeFile(join(contextDir, `d${d}`, `f${f}`), Buffer.alloc(48 * 1024, d * 40 + f));
    }
    await runAndKill(root, contextDir);
    // What the crash left behind (repaired by the open below).
    const leftovers = {
      mounts: (await mountsUnder(root)).length,
      ingest: (await readdir(join(root, 'content/ingest'))).length,
      snapshotDirs: (await readdir(join(root, 'snapshots'))).length,
    };
    console.log('left by the crash:', leftovers);
    expect(leftovers.snapshotDirs).toBeGreaterThan(1);

    const bkt = await createBkt([testPlugin()]);
    const solver = await openSolver({ root, bkt });
    try {
      // Consistency: no stale mounts, no partial blobs, rows <-> dirs, cache -> rows, blobs match their digests.
      expect(await mountsUnder(root)).toEqual([]);
      expect(await readdir(join(root, 'content/ingest'))).toEqual([]);
      const db = new Database(join(root, 'metadata.db'), { readonly: true });
      const rows = db.prepare('SELECT id, parent FROM snapshots').all() as { id: string; parent: string | null }[];
      const cacheSnaps = db.prepare('SELECT snapshot FROM cache_results WHERE snapshot IS NOT NULL').all() as { snapshot: string }[];
      db.close();
      expect(rows.length).toBeGreaterThan(0);
      const ids = new Set(rows.map((r) => r.id));
      for (const r of rows) {
        expect(existsSync(join(root, 'snapshots', r.id, 'fs')), `snapshot ${r.id} dir`).toBe(true);
        if (r.parent) expect(ids.has(r.parent)).toBe(true);
      }
      expect(new Set(await readdir(join(root, 'snapshots')))).toEqual(ids);
      for (const { snapshot } of cacheSnaps) expect(ids.has(snapshot), `cache record -> ${snapshot}`).toBe(true);
      const blobs = await readdir(join(root, 'content/blobs/sha256'));
      for (const hex of blobs) {
        expect(createHash('sha256').update(await readFile(join(root, 'content/blobs/sha256', hex))).digest('hex')).toBe(hex);
      }

      const r = await solver.solve({ definition: bigCopyGraph(), localDirs: { context: contextDir } });
      const m = await r.result.ref!.mount();
      try {
        expect((await readdir(join(m.path, 'big'))).length).toBe(20);
        expect((await readFile(join(m.path, 'big/d19/f39'))).equals(Buffer.alloc(48 * 1024, 19 * 40 + 39))).toBe(true);
      } finally {
        await m.release();
      }
    } finally {
      await solver.close();
    }
  } finally {
    for (const m of await mountsUnder(root)) execFileSync('umount', ['-l', m]);
    await rm(root, { recursive: true, force: true });
    await rm(contextDir, { recursive: true, force: true });
  }
}, 120_000);
