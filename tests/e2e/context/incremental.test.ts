/**
 * The local source's sync index, daemonless (`bkt build` with the CLI):
 * a build killed with SIGKILL while it updates the index (or at any other
 * moment of the sync) leaves a store whose next build is correct, and an
 * edit that keeps a file's size and mtime is still built.
 */
import { spawn } from 'node:child_process';
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile, readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BKT, bkt, describeTree, removeDir, tempDir } from '../helpers.js';

let work: string;
let context: string;
let root: string;
const PAST = new Date(Date.now() - 3600_000);

beforeAll(async () => {
  work = await tempDir('context-incremental');
  context = join(work, 'ctx');
  root = join(work, 'root');
  // 2,000 files: the index is large enough that writing it takes a while.
  for (let d = 0; d < 20; d++) {
    await mkdir(join(context, `d${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) {
      const file = join(context, `d${d}`, `f${f}.txt`);
      await writeFile(file, `file ${d}/${f}\n`.repeat(8));
      await utimes(file, PAST, PAST);
    }
  }
  await writeFile(join(work, 'Dockerfile'), 'FROM scratch\nCOPY . /ctx/\n');
});

afterAll(async () => {
  if (work) await removeDir(work);
});

let outs = 0;
const buildArgs = (out: string) => ['build', '--root', root, '--progress', 'plain', '-f', join(work, 'Dockerfile'), '--output', `type=local,dest=${out}`, context];

/** A clean build; its output must be the context as it is now. */
async function buildAndCheck(): Promise<void> {
  const out = join(work, `out-${++outs}`);
  const r = await bkt(buildArgs(out), { cwd: work });
  expect(r.code, r.stderr).toBe(0);
  expect(await describeTree(join(out, 'ctx'))).toEqual(await describeTree(context));
}

/**
 * Starts a build and kills it with SIGKILL when `when` says so: `index` —
 * when the source-local namespace sees a file being written (the index's
 * temp file or its rename); a number — after that many milliseconds.
 * Resolves with whether it died of the signal (it may have finished first).
 */
async function killedBuild(when: 'index' | number): Promise<boolean> {
  const out = join(work, `out-${++outs}`);
  const child = spawn('node', [BKT, ...buildArgs(out)], { cwd: work, stdio: 'ignore', env: { ...process.env, BKT_DEBUG: '' } });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  const watchers: FSWatcher[] = [];
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  if (when === 'index') {
    const ns = join(root, 'source-local');
    await mkdir(ns, { recursive: true });
    const watchRecord = (dir: string) => watchers.push(watch(dir, (_event, name) => name && /index/.test(String(name)) && kill()));
    for (const id of await readdir(ns)) watchRecord(join(ns, id));
    watchers.push(watch(ns, (_event, name) => name && watchRecord(join(ns, String(name)))));
  } else {
    setTimeout(kill, when);
  }
  const signal = await exited;
  for (const w of watchers) w.close();
  return signal === 'SIGKILL';
}

let changes = 0;
async function changeOneFile(): Promise<void> {
  const file = join(context, 'd3', `f${changes % 100}.txt`);
  await writeFile(file, `changed ${++changes}\n`);
  await utimes(file, PAST, PAST);
}

it('a build killed with SIGKILL while it updates the sync index (or anywhere else in the sync) leaves a store whose next build is correct', async () => {
  await buildAndCheck();
  let killedAtIndex = 0;
  for (let i = 0; i < 3; i++) {
    await changeOneFile();
    if (await killedBuild('index')) killedAtIndex++;
    await buildAndCheck();
  }
  // The kill landed while the index was being written at least once (a build that finished first proves nothing).
  expect(killedAtIndex).toBeGreaterThan(0);
  for (const ms of [200, 450, 700, 1000]) {
    await changeOneFile();
    await killedBuild(ms);
    await buildAndCheck();
  }
  // After all that, an unchanged context is a no-op and a change is still seen.
  await buildAndCheck();
  await changeOneFile();
  await buildAndCheck();
}, 300_000);

it('builds an edit that keeps the size and restores the mtime', async () => {
  await buildAndCheck();
  const file = join(context, 'd9/f9.txt');
  const before = await stat(file);
  const text = await readFile(file, 'utf8');
  await writeFile(file, text.replace('file', 'FILE'));
  await utimes(file, before.atime, before.mtime);
  const after = await stat(file);
  expect([after.size, after.mtimeMs]).toEqual([before.size, before.mtimeMs]);
  await buildAndCheck();
  expect(await readFile(join(work, `out-${outs}`, 'ctx/d9/f9.txt'), 'utf8')).toContain('FILE');
}, 120_000);
