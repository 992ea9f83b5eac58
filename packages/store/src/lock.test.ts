import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBktError } from '@bkt/core';
import { takeLock } from './lock.js';

let root: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-lock-'));
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill();
  await rm(root, { recursive: true, force: true });
});

/** A pid that is certainly dead: a child that has exited. */
async function deadPid(): Promise<number> {
  const c = spawn('true');
  await new Promise((r) => c.once('exit', r));
  return c.pid!;
}

/**
 * A separate process that, at wall-clock time `at`, takes the lock on `root`
 * (the real `takeLock`, loaded through jiti), prints `won` or `lost`, then
 * holds it for `holdMs` before exiting.
 */
function racer(at: number, holdMs: number): Promise<string> {
  const script = `
    const m = await import(${JSON.stringify(fileURLToPath(new URL('./lock.ts', import.meta.url)))});
    const takeLock = m.takeLock ?? m.default.takeLock;
    while (Date.now() < ${at}) {}
    let out;
    try { takeLock(${JSON.stringify(root)}); out = 'won'; } catch (e) { out = 'lost: ' + e.message; }
    console.log(out);
    setTimeout(() => {}, ${holdMs});
  `;
  const c = spawn(process.execPath, ['--conditions=source', '--import', 'jiti/register', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(c);
  let out = '';
  c.stdout!.on('data', (d: Buffer) => (out += d));
  return new Promise((resolve, reject) => {
    c.once('error', reject);
    c.stdout!.once('end', () => resolve(out.trim()));
  });
}

describe('store lock', () => {
  it('refuses a lock held by another live process, naming it', async () => {
    const other = spawn('sleep', ['30']);
    children.push(other);
    await writeFile(join(root, 'lock'), String(other.pid));
    let err: unknown;
    try {
      takeLock(root);
    } catch (e) {
      err = e;
    }
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toContain(`in use by process ${other.pid}`);
    expect(await readFile(join(root, 'lock'), 'utf8')).toBe(String(other.pid));
  });

  it('takes over a lock left by a dead process, and leaves no helper files', async () => {
    await writeFile(join(root, 'lock'), String(await deadPid()));
    takeLock(root);
    expect(await readFile(join(root, 'lock'), 'utf8')).toBe(String(process.pid));
    expect(await readdir(root)).toEqual(['lock']);
  });

  for (const stale of [false, true]) {
    it(`of two processes racing for ${stale ? 'a stale' : 'a free'} lock, exactly one wins`, { timeout: 30_000 }, async () => {
      if (stale) await writeFile(join(root, 'lock'), String(await deadPid()));
      const at = Date.now() + 2500; // both have loaded the module by then
      const results = await Promise.all([racer(at, 1500), racer(at, 1500)]);
      expect(results.filter((r) => r === 'won')).toHaveLength(1);
      expect(results.filter((r) => r.startsWith('lost: ') && r.includes('is in use by process'))).toHaveLength(1);
    });
  }
});
