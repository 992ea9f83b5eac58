/**
 * Containers have a pids limit (issue 8, defect 8): by default `pids.max` is
 * 4096 in the step's cgroup; a limit configured with `runcWorker({ pidsLimit })`
 * stops a (bounded) fork loop — fork fails past the limit, the step goes on,
 * the build ends cleanly and leaves no container or process behind.
 */
import { copyFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';

let work: string;

/** The step's own pids.max: cgroup v1 (a pids hierarchy) or v2 (unified). */
const READ_LIMIT = 'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max';
/** The fork loop's sleep duration, unique to this run: other tests (and other runs) sleep too, and only ours count. */
const SLEEP_SECONDS = 3600 + Math.floor(Math.random() * 100_000);
/**
 * Up to 200 background `sleep SLEEP_SECONDS`s; the inner shell stops at the first fork
 * that fails. Then every process but the step's init is killed (a builtin:
 * no fork needed), so the step ends at once.
 */
const FORK_LOOP = `sh -c 'i=0; while [ $i -lt 200 ]; do sleep ${SLEEP_SECONDS} & i=$((i+1)); done; echo spawned $i' > /forks 2>&1; echo "inner exit $?" >> /forks; kill -9 -1`;

beforeAll(async () => {
  work = await tempDir('security-pids-limit');
  // The build context: only the base rootfs (stores and outputs are written outside it).
  await mkdir(join(work, 'ctx/rootfs/bin'), { recursive: true });
  await copyFile('/bin/busybox', join(work, 'ctx/rootfs/bin/busybox'));
  for (const applet of ['sh', 'cat', 'sleep']) await symlink('busybox', join(work, `ctx/rootfs/bin/${applet}`));
});

afterAll(async () => {
  await removeDir(work);
});

function runcList(root: string): string[] {
  return execFileSync('runc', ['--root', join(root, 'runc/state'), 'list', '-q'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** Processes whose command line is `sleep SLEEP_SECONDS` (what this run's fork loop starts). */
function sleepers(): string[] {
  return readdirSync('/proc').filter((d) => {
    try {
      return /^\d+$/.test(d) && readFileSync(`/proc/${d}/cmdline`, 'utf8') === `sleep\u0000${SLEEP_SECONDS}\u0000`;
    } catch {
      return false;
    }
  });
}

describe('pids limit', () => {
  it('is 4096 by default', async () => {
    const dir = join(work, 'default');
    await mkdir(dir);
    await writeFile(join(dir, 'Dockerfile'), ['FROM scratch', 'COPY rootfs/ /', `RUN (${READ_LIMIT}) > /limit`, ''].join('\n'));
    const r = await bkt(['build', '--root', join(dir, 'store'), '--progress', 'plain', '-f', join(dir, 'Dockerfile'), '-o', `type=local,dest=${join(dir, 'out')}`, 'ctx'], { cwd: work });
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(join(dir, 'out/limit'), 'utf8')).toBe('4096\n');
  });

  it('a configured limit stops a fork loop and the build ends cleanly', async () => {
    const dir = join(work, 'configured');
    await mkdir(dir);
    await writeFile(
      join(dir, 'bkt.config.ts'),
      `import { defineConfig } from '@bkt/core';
import { local } from '@bkt/llb';
import runcWorker from '@bkt/worker-runc';
export default defineConfig({
  plugins: [runcWorker({ pidsLimit: 32 })],
  targets: {
    default: {
      localDirs: { rootfs: ${JSON.stringify(join(work, 'ctx/rootfs'))} },
      build: local('rootfs').run({ args: ['/bin/sh', '-c', ${JSON.stringify(`(${READ_LIMIT}) > /limit; ${FORK_LOOP}`)}] }).root(),
      outputs: [{ type: 'local', dest: 'out' }],
    },
  },
});
`,
    );
    const root = join(dir, 'store');
    const t0 = Date.now();
    const r = await bkt(['build', '--root', root, '--progress', 'plain'], { cwd: dir, timeoutMs: 60_000 });
    const tookMs = Date.now() - t0;
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(join(dir, 'out/limit'), 'utf8')).toBe('32\n');
    const forks = await readFile(join(dir, 'out/forks'), 'utf8');
    expect(forks).toMatch(/can't fork/);
    expect(forks).not.toContain('spawned 200');
    expect(forks).toMatch(/inner exit [1-9]/);
    expect(tookMs).toBeLessThan(30_000);
    expect(runcList(root)).toEqual([]);
    // SIGKILLed processes of a torn-down pid namespace may take a moment to be gone on a loaded machine.
    for (let i = 0; i < 50 && sleepers().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(sleepers()).toEqual([]);
  });
});
