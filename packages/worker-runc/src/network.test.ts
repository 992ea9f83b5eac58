/**
 * stopChild in a process of its own: a pooled namespace's helpers are unref'd, and the process must still wait for
 * them to exit (else Node exits with 13, its top-level await unsettled).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildSync } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'bkt-network-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Spawns an unref'd helper (as the pool leaves one) that takes `delay` s to exit once its stdin closes, then stops it. */
const SCRIPT = `
import { spawn } from 'node:child_process';
import { stopChild } from './network.cjs';
const child = spawn('/bin/sh', ['-c', 'cat >/dev/null; exec sleep ' + process.argv[2]], { stdio: ['pipe', 'pipe', 'pipe'] });
await new Promise((r) => child.once('spawn', r));
child.unref();
for (const s of child.stdio) s?.unref?.();
await stopChild(child);
console.log('stopped ' + (child.signalCode ?? child.exitCode));
`;

describe('stopChild', () => {
  buildSync({
    entryPoints: [resolve(import.meta.dirname, 'network.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    outfile: join(dir, 'network.cjs'),
    // A CommonJS bundle has no import.meta: modules that resolve packages from their own URL (core's hooks) resolve from here.
    define: { 'import.meta.url': JSON.stringify(pathToFileURL(resolve(import.meta.dirname, 'network.ts')).href) },
    logLevel: 'silent',
  });
  writeFileSync(join(dir, 'stop.mjs'), SCRIPT);
  const run = (delay: string) => spawnSync(process.execPath, [join(dir, 'stop.mjs'), delay], { cwd: import.meta.dirname, encoding: 'utf8', timeout: 10_000 });

  it('keeps the process alive until an unref\'d helper that takes longer than its grace period is gone (killed)', () => {
    const r = run('2');
    // Without the ref the process exits 13 (its top-level await unsettled) as soon as the kill timer has fired.
    expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ status: 0, stdout: 'stopped SIGKILL\n', stderr: '' });
  });

  it('resolves as soon as a helper exits within the grace period', () => {
    const r = run('0');
    expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ status: 0, stdout: 'stopped 0\n', stderr: '' });
  });
});
