/**
 * Issue 10: the tty display, driven in a real terminal (a tmux pane of 160×50,
 * where `--progress auto` picks tty): after a build whose stage `a` fails
 * while stage `b` runs, the final frame marks the failing step ERROR with its
 * last output lines under it and the other step CANCELED; then the warnings
 * follow (buildx's summary), then the failing step's report and the error.
 * Real runc, real registry. Skipped, saying why, where tmux is not installed
 * (scripts/setup installs it).
 */
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BKT, removeDir } from '../helpers.js';
import { dockerfile, openFixture, parallelFailureLines, warningLines, type Fixture } from './lib.js';

const run = promisify(execFile);
const hasTmux = spawnSync('tmux', ['-V']).status === 0;

// Without tmux the test is reported as skipped, beside a skipped test whose name says why.
if (!hasTmux) {
  describe('tty display in a tmux pane', () => {
    it.skip('skipped: tmux is not installed (scripts/setup installs it: apt-get install tmux)', () => undefined);
  });
}

describe.runIf(hasTmux)('tty display in a tmux pane', () => {
  let f: Fixture;
  /** A tmux server of this test only, its socket in the test's work dir; killed afterwards. */
  let socket: string;
  const tmux = (...args: string[]) => run('tmux', ['-S', socket, '-f', '/dev/null', ...args]);

  beforeAll(async () => {
    f = await openFixture('diag-tty');
    socket = join(f.work, 'tmux.sock');
  });

  afterAll(async () => {
    if (socket) await tmux('kill-server').catch(() => undefined);
    await f?.registry.stop();
    if (f) await removeDir(f.work);
  });

  /** Runs `bkt ARGS` in a fresh 160×50 pane and returns the whole pane (scrollback included) once it exited, and its exit code. */
  async function inPane(args: string[]): Promise<{ screen: string; code: number }> {
    const channel = `done-${randomBytes(4).toString('hex')}`;
    const script = join(f.work, `${channel}.sh`);
    const quoted = ['node', BKT, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
    await writeFile(script, `cd '${f.work}'\nBKT_DEBUG= NO_COLOR= ${quoted}\necho "bkt exited $?"\ntmux -S '${socket}' wait-for -S ${channel}\nsleep 600\n`);
    await tmux('new-session', '-d', '-s', channel, '-x', '160', '-y', '50', `sh ${script}`);
    await run('timeout', ['120', 'tmux', '-S', socket, 'wait-for', channel]);
    const { stdout } = await tmux('capture-pane', '-p', '-J', '-S', '-', '-E', '-', '-t', channel);
    await tmux('kill-session', '-t', channel);
    const code = Number(/^bkt exited (\d+)$/m.exec(stdout)?.[1] ?? -1);
    return { screen: stdout, code };
  }

  it('shows the failing step ERROR with its last lines, the stopped one CANCELED, then the warnings, the report and the error', async () => {
    const lines = [...warningLines(f.base), '', ...parallelFailureLines(f.base)];
    const path = await dockerfile(f, 'Dockerfile', lines);
    const { screen, code } = await inPane(['build', '--root', f.root, '-f', path, f.context]);
    expect(code, screen).toBe(1);

    // The final frame of the live display (auto → tty in a terminal).
    expect(screen).toMatch(/^\[\+\] Finished \d+\.\ds/m);
    const failing = /^ => ERROR \[a 2\/2\] RUN echo first line; sleep 1; echo giving up >&2; exit 3 +\d+\.\ds$/m.exec(screen);
    expect(failing, screen).not.toBeNull();
    expect(screen).toMatch(/^ => CANCELED \[b 2\/2\] RUN sleep 30; echo b done > \/b +\d+\.\ds$/m);
    expect(screen.match(/^ => ERROR /gm), screen).toHaveLength(1);
    // Under the failing step, its last output lines.
    const under = screen.slice(failing!.index).split('\n').slice(1, 3).map((l) => l.trimEnd());
    expect(under.sort()).toEqual([' => => # first line', ' => => # giving up']);

    // After the display: the warnings, then the failing step's report, then the error.
    const frameEnd = screen.lastIndexOf(' => ');
    const summary = screen.indexOf(' 2 warnings found (set BKT_DEBUG=1 to expand):');
    const report = screen.indexOf('------\n > [a 2/2] RUN echo first line; sleep 1; echo giving up >&2; exit 3:');
    const error = screen.search(/^error: Dockerfile:6: .*exit code: 3$/m);
    expect(summary, screen).toBeGreaterThan(frameEnd);
    expect(screen).toContain(" - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)\n");
    expect(screen).toContain(' - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)\n');
    expect(report, screen).toBeGreaterThan(summary);
    expect(error, screen).toBeGreaterThan(report);
    expect(screen).not.toMatch(/\(op sha256:/);
  });
});
