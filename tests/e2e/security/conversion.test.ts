/**
 * Issue 8, defect 4: conversion time is linear in the number of ENV/ARG
 * instructions (it was quadratic: 32k lines took 138 s).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('conversion');
  await writeFile(join(work, 'f'), 'f\n');
});

afterAll(async () => {
  await removeDir(work);
});

describe('a Dockerfile of 100,000 ENV lines', () => {
  it('converts and builds in under 10 s', async () => {
    const lines = Array.from({ length: 100_000 }, (_, i) => `ENV V${i}=value${i}`);
    await writeFile(join(work, 'Dockerfile'), `FROM scratch\n${lines.join('\n')}\nCOPY f /f\n`);
    const started = Date.now();
    const r = await bkt(['build', '--root', join(work, 'store'), '--progress', 'rawjson', '-o', 'type=local,dest=out', '.'], { cwd: work });
    const ms = Date.now() - started;
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(await readFile(join(work, 'out/f'), 'utf8')).toBe('f\n');
    expect(ms).toBeLessThan(10_000);
  });
});
