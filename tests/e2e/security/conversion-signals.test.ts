/**
 * Issue 8, defect 5: a long Dockerfile conversion yields to signals. SIGTERM
 * in the middle of converting 150,000 instructions exits 143 within 2 s
 * (the conversion was one synchronous loop that ignored signals).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BKT, removeDir, tempDir } from '../helpers.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('conversion-signals');
  await writeFile(join(work, 'f'), 'f\n');
  const lines = Array.from({ length: 150_000 }, (_, i) => (i % 3 === 0 ? `ARG A${i}=a${i}` : i % 3 === 1 ? `ENV E${i}=$A${i - 1}` : `LABEL l${i}=$E${i - 1}`));
  await writeFile(join(work, 'Dockerfile'), `FROM scratch\n${lines.join('\n')}\nCOPY f /f\n`);
});

afterAll(async () => {
  await removeDir(work);
});

describe.each([
  ['SIGTERM', 143],
  ['SIGINT', 130],
] as const)('%s during a long conversion', (sig, code) => {
  it(`exits ${code} within 2 s`, async () => {
    const child = execa('node', [BKT, 'build', '--root', join(work, `store-${sig}`), '--progress', 'rawjson', '-o', 'type=local,dest=out', '.'], {
      cwd: work,
      reject: false,
      env: { BKT_DEBUG: '' },
    });
    // Conversion starts after ~0.5 s (start-up, reading and parsing) and takes several seconds.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(child.exitCode).toBeNull();
    const sentAt = Date.now();
    child.kill(sig);
    const r = await child;
    const tookMs = Date.now() - sentAt;
    expect(r.exitCode, String(r.stderr).slice(-2000)).toBe(code);
    expect(String(r.stderr)).toMatch(new RegExp(`interrupted by ${sig}`));
    expect(tookMs).toBeLessThan(2_000);
  });
});

describe('SIGTERM while a large Dockerfile is parsed', () => {
  it('exits 143 within 2 s', async () => {
    // 600,000 lines: parsing alone takes seconds (it was one synchronous call).
    const dir = join(work, 'parse');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Dockerfile'), `FROM scratch\n${Array.from({ length: 600_000 }, (_, i) => `LABEL l${i}=v${i}`).join('\n')}\n`);
    const child = execa('node', [BKT, 'build', '--root', join(dir, 'store'), '--progress', 'rawjson', '-o', 'type=local,dest=out', '.'], {
      cwd: dir,
      reject: false,
      env: { BKT_DEBUG: '' },
    });
    // Start-up takes about 0.5 s; the parse of 600,000 lines several seconds.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    expect(child.exitCode).toBeNull();
    const sentAt = Date.now();
    child.kill('SIGTERM');
    const r = await child;
    const tookMs = Date.now() - sentAt;
    expect(r.exitCode, String(r.stderr).slice(-2000)).toBe(143);
    expect(String(r.stderr)).toMatch(/interrupted by SIGTERM/);
    expect(tookMs).toBeLessThan(2_000);
  });
});
