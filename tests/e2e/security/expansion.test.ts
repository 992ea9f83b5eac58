/**
 * Issue 8, defect 3: variable expansion is bounded. Lines that each double a
 * value (`ARG A1=$A0$A0` …, 41 of them would make 4 TiB) fail fast, in little
 * memory, with an error naming the Dockerfile line and the limit.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BKT, removeDir, tempDir } from '../helpers.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('expansion');
  await writeFile(join(work, 'f'), 'f\n');
});

afterAll(async () => {
  await removeDir(work);
});

/** `KEYWORD A0=xx` then 41 lines doubling it. */
function doubling(keyword: string): string {
  return [`${keyword} A0=xx`, ...Array.from({ length: 41 }, (_, i) => `${keyword} A${i + 1}=$A${i}$A${i}`)].join('\n');
}

/** Peak resident memory of a process in KiB (VmHWM), or undefined once it has exited. */
function peakRssKiB(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Builds `dockerfile`; returns the result, the wall time and the highest VmHWM seen (polled every 5 ms). */
async function build(name: string, dockerfile: string): Promise<{ code: number; stderr: string; ms: number; peakMiB: number }> {
  await writeFile(join(work, name), dockerfile);
  const started = Date.now();
  const child = execa('node', [BKT, 'build', '-f', name, '--root', join(work, 'store'), '--progress', 'plain', '-o', 'type=local,dest=out', '.'], {
    cwd: work,
    reject: false,
    env: { BKT_DEBUG: '' },
  });
  let peak = 0;
  const poll = setInterval(() => {
    peak = Math.max(peak, peakRssKiB(child.pid!) ?? 0);
  }, 5);
  const r = await child;
  clearInterval(poll);
  return { code: r.exitCode ?? -1, stderr: String(r.stderr), ms: Date.now() - started, peakMiB: peak / 1024 };
}

describe('a Dockerfile doubling a value on each line', () => {
  it.each([
    ['ARG in a stage', `FROM scratch\n${doubling('ARG')}\nCOPY f /f\n`, 22, 'ARG A20=$A19$A19'],
    ['ENV', `FROM scratch\n${doubling('ENV')}\nCOPY f /f\n`, 22, 'ENV A20=$A19$A19'],
    ['a global ARG', `${doubling('ARG')}\nFROM scratch\nCOPY f /f\n`, 21, 'ARG A20=$A19$A19'],
  ])('fails in under 5 s and 200 MB, naming the line and the limit (%s)', async (what, dockerfile, line, text) => {
    const r = await build(`${what.replace(/ /g, '-')}.Dockerfile`, dockerfile);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`:${line}:1: failed to process "$A19$A19": the expanded value is longer than 1 MiB (1048576 characters), the limit of an expanded word`);
    expect(r.stderr).toContain(`${String(line).padStart(4)} | ${text}`);
    expect(r.ms).toBeLessThan(5_000);
    expect(r.peakMiB).toBeGreaterThan(0);
    expect(r.peakMiB).toBeLessThan(200);
  });

  it('LABEL lines each copying a 1 MiB value fail on the total, naming the line', async () => {
    const dockerfile = `FROM scratch\n${doubling('ENV').split('\n').slice(0, 20).join('\n')}\n${Array.from({ length: 200 }, (_, i) => `LABEL l${i}=$A19`).join('\n')}\n`;
    const r = await build('labels.Dockerfile', dockerfile);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/labels\.Dockerfile:\d+:1: failed to process "\$A19": variable expansion exceeds the limit of 64 MiB \(67108864 characters\) substituted in one Dockerfile/);
    expect(r.stderr).toMatch(/\d+ \| LABEL l\d+=\$A19/);
    expect(r.ms).toBeLessThan(5_000);
    expect(r.peakMiB).toBeLessThan(200);
  });

  it('a stage environment repeated by every RUN fails at the first RUN, naming the line and the limit (not a 1.9 GB definition)', async () => {
    // A19 = 1 MiB; B0..B29 copy it; each of 60 RUNs carried all of it into the definition.
    const dockerfile = [
      'FROM scratch',
      ...doubling('ENV').split('\n').slice(0, 20),
      ...Array.from({ length: 30 }, (_, i) => `ENV B${i}=$A19`),
      ...Array.from({ length: 60 }, (_, i) => `RUN echo ${i}`),
    ].join('\n');
    const r = await build('environment.Dockerfile', `${dockerfile}\n`);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(
      'environment.Dockerfile:52:1: the environment variable A19 is 1048581 bytes (as NAME=value), more than the 128 KiB (131072 bytes) Linux allows one variable of a process (MAX_ARG_STRLEN)',
    );
    expect(r.stderr).toContain('  52 | RUN echo 0');
    expect(r.ms).toBeLessThan(5_000);
    expect(r.peakMiB).toBeGreaterThan(0);
    expect(r.peakMiB).toBeLessThan(200);
  });
});
