/**
 * `bkt debug build` and `bkt build --invoke` in a real terminal (tmux, on a
 * tmux server of this test's own): a shell in the failed RUN step's
 * container as the step left it (its files, cwd, env), in the final result;
 * the terminal's size followed; leaving the shell leaves no runc container
 * and no mount under the store. Also through bktd (its buildx Controller).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBktd } from '../daemon/lib.js';
import { BKT, bkt, removeDir, tempDir } from '../helpers.js';

const SOCKET = `bkt-e2e-debug-${process.pid}`;
let work: string;

function tmux(...args: string[]): string {
  return execFileSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });
}

/** The pane's whole text, wrapped lines joined. */
function screen(session: string): string {
  return tmux('capture-pane', '-p', '-J', '-S', '-', '-t', session);
}

async function waitFor(session: string, want: RegExp, timeoutMs = 120_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = screen(session);
    if (want.test(text)) return text;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${want} in the terminal:\n${text}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Starts `bkt ARGS` in a new 120×40 terminal; the pane stays after it exits, showing its exit code. */
function startInTerminal(session: string, args: string[]): void {
  const quoted = ['node', BKT, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '40', `${quoted}; echo BKT-EXIT=$?; sleep 600`);
}

function runcContainers(store: string): string[] {
  try {
    return execFileSync('runc', ['--root', join(store, 'runc', 'state'), 'list', '-q'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((p) => p.startsWith(dir));
}

async function context(name: string, dockerfile: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await makeBusyboxRootfs(join(dir, 'rootfs'));
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

beforeAll(async () => {
  work = await tempDir('debug');
});

afterAll(async () => {
  try {
    tmux('kill-server');
  } catch {
    // No server left.
  }
  await removeDir(work);
});

describe('bkt debug and --invoke in a terminal (tmux)', () => {
  it('bkt debug build opens a shell in the failed step as it left it; exit releases everything', async () => {
    const ctx = await context(
      'failing',
      [
        'FROM scratch',
        'COPY rootfs/ /',
        'WORKDIR /work',
        'ENV STEP_VAR=from-the-step',
        'RUN echo written-by-the-failing-step > /work/partial.txt && mkdir -p /work/sub && echo nested > /work/sub/n.txt && exit 1',
        '',
      ].join('\n'),
    );
    const store = join(work, 'store-debug');
    startInTerminal('dbg', ['debug', 'build', '--root', store, '--progress', 'plain', ctx]);
    await waitFor('dbg', /running \/bin\/sh in its container[\s\S]*\/work # $/m);
    expect(runcContainers(store)).toHaveLength(1);

    tmux('send-keys', '-t', 'dbg', 'ls; cat partial.txt sub/n.txt; echo "var=$STEP_VAR"; pwd; id -u', 'Enter');
    const text = await waitFor('dbg', /written-by-the-failing-step\s+nested\s+var=from-the-step\s+\/work\s+0\s/);
    expect(text).toMatch(/partial\.txt\s+sub/);

    // The shell's terminal follows this one's size.
    tmux('resize-window', '-t', 'dbg', '-x', '100', '-y', '30');
    await new Promise((r) => setTimeout(r, 300));
    tmux('send-keys', '-t', 'dbg', 'stty size', 'Enter');
    await waitFor('dbg', /stty size\s+30 100\s/);

    tmux('send-keys', '-t', 'dbg', 'exit', 'Enter');
    const end = await waitFor('dbg', /BKT-EXIT=\d+/);
    expect(end).toMatch(/BKT-EXIT=1/);
    expect(end).toMatch(/error: Dockerfile:5: .*exit code: 1/);
    expect(runcContainers(store)).toEqual([]);
    expect(mountsUnder(store)).toEqual([]);
  });

  it('bkt debug build --addr unix://…: the same through bktd (its Controller)', async () => {
    const ctx = await context(
      'failing-remote',
      ['FROM scratch', 'COPY rootfs/ /', 'WORKDIR /srv', 'ENV FROM_STEP=remote', 'RUN echo left-by-the-step > /srv/left.txt && exit 4', ''].join('\n'),
    );
    const root = join(work, 'bktd-root');
    const socket = join(work, 'bktd.sock');
    const daemon = await startBktd(['--addr', `unix://${socket}`, '--root', root, '--controller'], { cwd: work });
    try {
      startInTerminal('rdbg', ['debug', 'build', '--addr', `unix://${socket}`, '--progress', 'plain', ctx]);
      await waitFor('rdbg', /in the failed step's container[\s\S]*\/srv # $/m);
      expect(runcContainers(root)).toHaveLength(1);
      tmux('send-keys', '-t', 'rdbg', 'cat left.txt; echo "var=$FROM_STEP"; stty size', 'Enter');
      await waitFor('rdbg', /left-by-the-step\s+var=remote\s+40 120\s/);
      tmux('resize-window', '-t', 'rdbg', '-x', '90', '-y', '25');
      await new Promise((r) => setTimeout(r, 300));
      tmux('send-keys', '-t', 'rdbg', 'stty size', 'Enter');
      await waitFor('rdbg', /stty size\s+25 90\s/);
      tmux('send-keys', '-t', 'rdbg', 'exit', 'Enter');
      const end = await waitFor('rdbg', /BKT-EXIT=\d+/);
      expect(end).toMatch(/BKT-EXIT=1/);
      expect(end).toMatch(/exit code: 4/);
      expect(runcContainers(root)).toEqual([]);
      expect(mountsUnder(root)).toEqual([]);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });

  it('without a terminal the shell reads stdin: a failed step with bkt debug, the result with --on always', async () => {
    const failing = await context('piped-failing', ['FROM scratch', 'COPY rootfs/ /', 'WORKDIR /w', 'RUN echo piped-partial > p.txt && exit 2', ''].join('\n'));
    const store = join(work, 'store-piped');
    const r = await bkt(['debug', 'build', '--root', store, '--progress', 'plain', failing], { cwd: work, input: 'pwd; cat p.txt\nexit 5\n' });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('/w\npiped-partial\n');
    expect(r.stderr).toMatch(/bkt debug: \/bin\/sh exited with code 5; container released/);
    expect(r.stderr).toMatch(/error: Dockerfile:4: .*exit code: 2/);

    const ok = await context('piped-ok', ['FROM scratch', 'COPY rootfs/ /', 'RUN echo in-result > /r.txt', ''].join('\n'));
    const r2 = await bkt(['debug', '--on', 'always', '--invoke', 'cat /r.txt', 'build', '--root', store, '--progress', 'plain', ok], { cwd: work });
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stdout).toBe('in-result\n');
    // A successful build with the default --on error opens nothing.
    const r3 = await bkt(['debug', 'build', '--root', store, '--progress', 'plain', ok], { cwd: work, input: 'echo never-run\n' });
    expect(r3.code).toBe(0);
    expect(r3.stdout).toBe('');
    expect(runcContainers(store)).toEqual([]);
    expect(mountsUnder(store)).toEqual([]);
  });

  it('bkt build --invoke sh opens a shell in the final result', async () => {
    const ctx = await context(
      'result',
      ['FROM scratch', 'COPY rootfs/ /', 'WORKDIR /app', 'ENV IN_IMAGE=yes', 'RUN echo built-into-the-result > /app/result.txt', ''].join('\n'),
    );
    const store = join(work, 'store-invoke');
    startInTerminal('inv', ['build', '--root', store, '--progress', 'plain', '--invoke', 'sh', ctx]);
    await waitFor('inv', /running sh in the build result[\s\S]*\/app # $/m);
    tmux('send-keys', '-t', 'inv', 'cat /app/result.txt; pwd; echo "image=$IN_IMAGE"; ls /bin/busybox', 'Enter');
    await waitFor('inv', /built-into-the-result\s+\/app\s+image=yes\s+\/bin\/busybox\s/);
    tmux('send-keys', '-t', 'inv', 'exit 3', 'Enter');
    const end = await waitFor('inv', /BKT-EXIT=\d+/);
    expect(end).toMatch(/sh exited with code 3; container released/);
    expect(end).toMatch(/BKT-EXIT=0/);
    expect(runcContainers(store)).toEqual([]);
    expect(mountsUnder(store)).toEqual([]);
  });
});
