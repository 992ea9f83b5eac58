/**
 * The acceptance of cancellation through the real CLI (`bkt build`, from the
 * built dist/): SIGINT during `sleep 100` exits within 2 s and leaves no
 * container, mount or process; the next build succeeds.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { local, marshalBytes } from '@bkt/llb';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BKT = resolve(import.meta.dirname, '../../cli/bin/bkt.js');
let dir: string;
let base: string;

beforeAll(async () => {
  if (!existsSync(resolve(import.meta.dirname, '../../cli/dist-bin/bkt.js'))) {
    throw new Error('the CLI is not built: run `npm run build` first');
  }
  dir = await mkdtemp(join(tmpdir(), 'bkt-worker-cli-'));
  base = await makeBusyboxRootfs(join(dir, 'base'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function runcList(root?: string): string[] {
  try {
    const args = root ? ['--root', root, 'list', '-q'] : ['list', '-q'];
    return execFileSync('runc', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

describe('bkt build with exec steps', () => {
  it('SIGINT during `sleep 100`: exits within 2 s, nothing left behind, the next build succeeds', async () => {
    const store = join(dir, 'store');
    await writeFile(join(dir, 'sleep.pb'), marshalBytes(local('base').run({ shell: 'echo ready-$((40 + 2)); sleep 100' }).root()));
    const child = spawn(process.execPath, [BKT, 'build', '--llb', 'sleep.pb', '--local', `base=${base}`, '--root', store, '--progress', 'plain'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    for (let i = 0; i < 400 && !stderr.includes('ready-42'); i++) await new Promise((r) => setTimeout(r, 25));
    expect(stderr).toContain('ready-42');
    expect(runcList(join(store, 'runc/state'))).toHaveLength(1);

    const t0 = Date.now();
    child.kill('SIGINT');
    const code = await exited;
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(code).toBe(130);
    expect(runcList(join(store, 'runc/state'))).toEqual([]);
    expect(runcList().filter((id) => id.startsWith('bkt-'))).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(store);
    expect(containerProcesses(child.pid!)).toEqual([]);

    await writeFile(join(dir, 'next.pb'), marshalBytes(local('base').run({ shell: 'echo next > /next' }).root()));
    const out = join(dir, 'out');
    execFileSync(process.execPath, [BKT, 'build', '--llb', 'next.pb', '--local', `base=${base}`, '--root', store, '-o', `type=local,dest=${out}`], {
      cwd: dir,
      stdio: 'ignore',
    });
    expect(readFileSync(join(out, 'next'), 'utf8')).toBe('next\n');
  });
});

/** Pids of processes still in a cgroup of a container made by worker process `workerPid` (ids `bkt-<pid>-…`). */
function containerProcesses(workerPid: number): string[] {
  const marker = `/bkt/bkt-${workerPid}-`;
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes(marker);
      } catch {
        return false;
      }
    });
}
