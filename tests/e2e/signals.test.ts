/**
 * SIGINT / SIGTERM during a build: the CLI aborts the solve, cleans up (no
 * mount left under the store) and exits 130 / 143 promptly; the store stays
 * usable for the next build.
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BKT, bkt, copyOp, definition, removeDir, sourceOp, tempDir } from './helpers.js';

let work: string;
let context: string;
const ctxSource = sourceOp('local://context');
const copyBig = copyOp(ctxSource, '/big', '/big');
const def = definition([ctxSource, copyBig], copyBig);

beforeAll(async () => {
  work = await tempDir('signals');
  context = join(work, 'ctx');
  await mkdir(context);
  // Large enough that checksumming and copying it takes a while.
  const chunk = Buffer.alloc(1 << 20, 7);
  const big = Buffer.concat(Array.from({ length: 150 }, (_, i) => (chunk.fill(i % 251), Buffer.from(chunk))));
  await writeFile(join(context, 'big'), big);
  await writeFile(join(work, 'def.pb'), def);
});

afterAll(async () => {
  await removeDir(work);
});

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4]?.startsWith(dir));
}

describe.each([
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const)('%s during a build', (sig, code) => {
  it(`exits ${code} promptly, leaving no mount, and the next build succeeds`, async () => {
    const root = join(work, `store-${sig}`);
    const child = execa('node', [BKT, 'build', '--llb', 'def.pb', '--local', `context=${context}`, '--root', root, '--progress', 'rawjson', '-o', 'type=local,dest=out'], {
      cwd: work,
      reject: false,
    });
    // Signal once the first step has started.
    await new Promise<void>((resolve, reject) => {
      let seen = '';
      child.stderr!.on('data', (d: Buffer) => {
        seen += d.toString();
        if (/"started"/.test(seen)) resolve();
      });
      child.once('exit', () => reject(new Error(`bkt exited before any step started:\n${seen}`)));
    });
    const sentAt = Date.now();
    child.kill(sig);
    const r = await child;
    const tookMs = Date.now() - sentAt;
    expect(r.exitCode, String(r.stderr)).toBe(code);
    expect(tookMs).toBeLessThan(5000);
    expect(String(r.stderr)).toMatch(/interrupted by SIG/);
    expect(mountsUnder(root)).toEqual([]);

    const again = await bkt(['build', '--llb', 'def.pb', '--local', `context=${context}`, '--root', root, '--progress', 'plain', '-o', 'type=local,dest=out'], { cwd: work });
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(join(work, 'out/big')).length).toBe(150 << 20);
  });
});
