/**
 * Issue 2 acceptance: `bkt build` of examples/hello writes the expected tree;
 * the second run is all CACHED and spends < 300 ms in the solver; changing
 * one context file re-runs only the steps that read it. Also `du` / `prune`
 * over the store the builds made, and a tar output that GNU tar reads.
 */
import { execFileSync } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, bkt, describeTree, removeDir, solverMs, tempDir, vertices } from './helpers.js';

let work: string;
let project: string;
let root: string;

/** The tree examples/hello/README.md promises. */
const EXPECTED = [
  'app/ dir 755',
  'app/bin/ dir 755',
  /^app\/bin\/hello\.sh file 755 \d+ \w+$/,
  /^app\/bin\/notes\.txt file 644 \d+ \w+$/,
  'docs/ dir 755',
  /^docs\/README file 644 14 \w+$/,
  /^greeting\.txt file 644 30 \w+$/,
];

beforeAll(async () => {
  work = await tempDir('hello');
  project = join(work, 'hello');
  root = join(work, 'store');
  await cp(join(REPO, 'examples/hello'), project, { recursive: true, filter: (src) => !src.includes('/out') });
});

afterAll(async () => {
  await removeDir(work);
});

const build = (...args: string[]) => bkt(['build', '--root', root, '--progress', 'rawjson', ...args], { cwd: project });

describe('examples/hello', () => {
  it('writes the expected tree', async () => {
    const r = await build();
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    const tree = await describeTree(join(project, 'out'));
    expect(tree).toHaveLength(EXPECTED.length);
    EXPECTED.forEach((want, i) => (typeof want === 'string' ? expect(tree[i]).toBe(want) : expect(tree[i]).toMatch(want)));
    expect(await readFile(join(project, 'out/docs/README'), 'utf8')).toBe('Built by bkt.\n');
    expect(await readFile(join(project, 'out/greeting.txt'), 'utf8')).toBe(await readFile(join(project, 'greeting.txt'), 'utf8'));
    expect(await readFile(join(project, 'out/app/bin/hello.sh'), 'utf8')).toBe(await readFile(join(project, 'src/hello.sh'), 'utf8'));
    // Every vertex of a first build ran.
    const vs = [...vertices(r.stderr).values()];
    expect(vs.length).toBeGreaterThanOrEqual(6);
    expect(vs.filter((v) => v.cached)).toEqual([]);
  });

  it('runs again with every step CACHED and under 300 ms in the solver', async () => {
    const r = await build();
    expect(r.code).toBe(0);
    const vs = [...vertices(r.stderr).values()];
    expect(vs.length).toBeGreaterThan(0);
    expect(vs.filter((v) => !v.cached).map((v) => v.name)).toEqual([]);
    expect(solverMs(r.stderr)).toBeLessThan(300);
    expect(await describeTree(join(project, 'out'))).toHaveLength(EXPECTED.length);
  });

  it('re-runs only the steps that read a changed context file', async () => {
    await writeFile(join(project, 'src/notes.txt'), 'edited\n');
    const r = await build();
    expect(r.code).toBe(0);
    const vs = [...vertices(r.stderr).values()];
    const ran = vs.filter((v) => !v.cached).map((v) => v.name).sort();
    const cached = vs.filter((v) => v.cached).map((v) => v.name).sort();
    expect(ran).toEqual(['copy src/ into /app/bin', 'local://context', 'merge the parts', 'what the copy added']);
    expect(cached).toEqual(['copy greeting.txt', 'make /app with its VERSION', 'write /docs/README']);
    expect(await readFile(join(project, 'out/app/bin/notes.txt'), 'utf8')).toBe('edited\n');
  });

  it('builds a target into a tar archive GNU tar reads, and to stdout', async () => {
    const r = await build('app');
    expect(r.code).toBe(0);
    const listing = execFileSync('tar', ['-tvf', join(project, 'out/app.tar')], { encoding: 'utf8' });
    expect(listing).toMatch(/^-rw-r--r-- .* app\/VERSION$/m);
    expect(listing).toMatch(/^-rwxr-xr-x .* app\/bin\/hello\.sh$/m);

    const s = await bkt(['build', 'app', '--root', root, '--progress', 'plain', '-o', '-'], { cwd: project });
    expect(s.code).toBe(0);
    await writeFile(join(work, 'stdout.tar'), s.stdoutBytes);
    expect(execFileSync('tar', ['-tf', join(work, 'stdout.tar')], { encoding: 'utf8' })).toContain('app/VERSION');
  });

  it('--no-cache runs every step again', async () => {
    const r = await build('--no-cache');
    expect(r.code).toBe(0);
    expect([...vertices(r.stderr).values()].filter((v) => v.cached)).toEqual([]);
  });

  it('du lists the records and prune --all empties the store', async () => {
    const du = await bkt(['du', '--root', root], { cwd: project });
    expect(du.code).toBe(0);
    const rows = du.stdout.split('\n').filter((l) => /^\S+\*? +(true|false) +\S+/.test(l));
    expect(rows.length).toBeGreaterThanOrEqual(4);
    expect(du.stdout).toMatch(/^Reclaimable: +\S+$/m);

    const keep = await bkt(['prune', '--keep-duration', '24h', '--root', root], { cwd: project });
    expect(keep.code).toBe(0);
    expect(keep.stdout).toMatch(/^Total:\t0B$/m);

    const all = await bkt(['prune', '--all', '--root', root], { cwd: project });
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(/^Total:\t\d/m);
    const after = await bkt(['du', '--root', root], { cwd: project });
    expect(after.stdout.split('\n').filter((l) => /^\S+\*? +(true|false) +\S+/.test(l))).toEqual([]);

    // The store still works: the next build runs from scratch.
    const again = await build();
    expect(again.code).toBe(0);
    expect([...vertices(again.stderr).values()].filter((v) => v.cached)).toEqual([]);
  });
});
