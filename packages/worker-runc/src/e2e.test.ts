/**
 * The worker inside the real solver: builds of LLB graphs (from @bkt/llb) over
 * a busybox base from the `local` source, exported with the local exporter.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBkt, type ProgressEvent } from '@bkt/core';
import { local, marshalBytes } from '@bkt/llb';
import localExporters from '@bkt/exporter-local';
import localSource from '@bkt/source-local';
import { openSolver, type Solver } from '@bkt/solver';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import runcWorker from './index.js';

let dir: string;
let base: string;
let root: string;
let solver: Solver;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bkt-worker-e2e-'));
  base = await makeBusyboxRootfs(join(dir, 'base'));
  root = join(dir, 'store');
  const bkt = await createBkt([localSource(), runcWorker(), localExporters()]);
  solver = await openSolver({ root, bkt });
});
afterAll(async () => {
  await solver?.close();
  await rm(dir, { recursive: true, force: true });
});

function logsOf(events: ProgressEvent[]): string {
  return events
    .filter((e): e is Extract<ProgressEvent, { type: 'log' }> => e.type === 'log')
    .map((e) => Buffer.from(e.log.msg).toString())
    .join('');
}

async function allFiles(d: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
    const p = join(d, e.name);
    if (e.isDirectory()) out.push(...(await allFiles(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

describe('worker-runc in the solver', () => {
  it('runs dependent steps, caches them, and exports the result', async () => {
    const state = local('base')
      .run({ shell: 'echo one > /one' })
      .root()
      .run({ shell: 'cat /one > /two; echo two >> /two' })
      .root();
    const out = join(dir, 'out1');
    const events: ProgressEvent[] = [];
    const res = await solver.solve({
      definition: marshalBytes(state),
      localDirs: { base },
      exporters: [{ type: 'local', attrs: { dest: out } }],
      onProgress: (e) => events.push(e),
    });
    expect(readFileSync(join(out, 'two'), 'utf8')).toBe('one\ntwo\n');
    expect(res.stats.vertices).toBe(3);
    const again = await solver.solve({ definition: marshalBytes(state), localDirs: { base } });
    expect(again.stats.cached).toBe(3);
  });

  it('a cache mount persists from one build to the next', async () => {
    const step = (n: number) =>
      local('base')
        .run({ shell: `echo build${n} >> /var/cache/app/log; cat /var/cache/app/log`, mounts: [{ type: 'cache', target: '/var/cache/app', id: 'e2e' }] })
        .root();
    await solver.solve({ definition: marshalBytes(step(1)), localDirs: { base } });
    const events: ProgressEvent[] = [];
    await solver.solve({ definition: marshalBytes(step(2)), localDirs: { base }, onProgress: (e) => events.push(e) });
    expect(logsOf(events)).toBe('build1\nbuild2\n');
  });

  it('a secret is visible to its step and nowhere else: not in the export, the store or the logs', async () => {
    const SECRET = 'e2e-s3cret-7d1c0b55aa';
    const state = local('base')
      .run({
        shell: `[ "$(cat /run/secrets/token)" = "$EXPECT" ] && echo secret-seen; [ "$TOKEN" = "$EXPECT" ] && echo env-seen; cp /run/secrets/token /dev/null; echo done > /result`,
        env: { EXPECT: 'e2e-s3cret-' + '7d1c0b55aa' },
        mounts: [{ type: 'secret', target: '/run/secrets/token', id: 'token' }],
        secretEnv: [{ name: 'TOKEN', id: 'token' }],
      })
      .root();
    const out = join(dir, 'out-secret');
    const events: ProgressEvent[] = [];
    await solver.solve({
      definition: marshalBytes(state),
      localDirs: { base },
      secrets: { get: async (id) => (id === 'token' ? new TextEncoder().encode(SECRET) : null) },
      exporters: [{ type: 'local', attrs: { dest: out } }],
      onProgress: (e) => events.push(e),
    });
    const logs = logsOf(events);
    expect(logs).toBe('secret-seen\nenv-seen\n');
    expect(readFileSync(join(out, 'result'), 'utf8')).toBe('done\n');
    for (const tree of [out, root]) {
      for (const f of await allFiles(tree)) expect((await readFile(f)).includes(SECRET), f).toBe(false);
    }
    expect(JSON.stringify(events)).not.toContain(SECRET);
  });

  it('a failing step names the step, the exit code and its last output lines', async () => {
    const state = local('base').run({ shell: 'echo about to fail; exit 42', customName: 'failing step' }).root();
    const err = await solver.solve({ definition: marshalBytes(state), localDirs: { base } }).catch((e) => e);
    expect(err.code).toBe('EXEC_FAILED');
    expect(err.message).toContain('exit code: 42');
    expect(err.message).toContain('failing step');
    expect(err.message).toContain('about to fail');
    expect(err.message).toMatch(/\/bin\/sh -c echo about to fail; exit 42/);
  });

  it('cancelling a build during `sleep 100` ends it within 2 s, leaving no container or mount; the next build runs', async () => {
    const ac = new AbortController();
    const state = local('base').run({ shell: 'sleep 100' }).root();
    const events: ProgressEvent[] = [];
    const build = solver
      .solve({ definition: marshalBytes(state), localDirs: { base }, signal: ac.signal, onProgress: (e) => events.push(e) })
      .catch((e) => e);
    const runcRoot = join(root, 'runc/state');
    const listed = () => {
      try {
        return execFileSync('runc', ['--root', runcRoot, 'list', '-q'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      } catch {
        return '';
      }
    };
    for (let i = 0; i < 200 && listed() === ''; i++) await new Promise((r) => setTimeout(r, 25));
    expect(listed()).not.toBe('');
    const t0 = Date.now();
    ac.abort();
    const err = await build;
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err.code).toBe('CANCELLED');
    // The solver gives up on the vertex at once; the worker's teardown finishes in the background, within 2 s.
    const clean = () =>
      listed() === '' &&
      !/^bkt-/m.test(execFileSync('runc', ['list', '-q'], { encoding: 'utf8' })) &&
      !readFileSync('/proc/self/mountinfo', 'utf8').includes(join(root, 'runc')) &&
      readdirSync(join(root, 'runc/bundles')).length === 0 &&
      readdirSync(join(root, 'runc/mounts')).length === 0;
    while (!clean() && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 25));
    expect(clean()).toBe(true);
    expect(Date.now() - t0).toBeLessThan(2000);
    const next = local('base').run({ shell: 'echo next > /n' }).root();
    const out = join(dir, 'out-next');
    await solver.solve({ definition: marshalBytes(next), localDirs: { base }, exporters: [{ type: 'local', attrs: { dest: out } }] });
    expect(readFileSync(join(out, 'n'), 'utf8')).toBe('next\n');
  });
});
