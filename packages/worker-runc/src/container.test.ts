/**
 * Interactive containers (core's ContainerProvider) against real runc: several
 * processes in one container, a tty with resize, signals, release leaving
 * no container, mount or process behind; a failed step's kept state.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import * as pb from '@bkt/api/pb';
import { failedExecOf, isBktError, isContainerProvider, type BuildContext, type ContainerProcess, type InteractiveContainer } from '@bkt/core';
import { testBuildContext } from '@bkt/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openHarness, runStep, type Harness } from './harness.test-util.js';

let h: Harness;
let ctx: BuildContext;
let finish: () => Promise<void>;

beforeAll(async () => {
  h = await openHarness();
  ({ ctx, finish } = testBuildContext({ root: h.root, snapshotter: h.store.snapshotter, content: h.store.content, records: h.store.records }));
});

afterAll(async () => {
  await finish?.();
  await h?.close();
});

const rootMount = (extra: Partial<pb.Mount> = {}) => pb.Mount.fromPartial({ input: 0, dest: '/', output: -1, ...extra });

async function newContainer(opts: { mounts?: pb.Mount[]; entitlements?: string[]; network?: 'sandbox' | 'none' | 'host' } = {}): Promise<InteractiveContainer> {
  const c = opts.entitlements ? testBuildContext({ root: h.root, snapshotter: h.store.snapshotter, content: h.store.content, records: h.store.records, entitlements: opts.entitlements }).ctx : ctx;
  return h.executor.newContainer({ mounts: opts.mounts ?? [rootMount()], inputs: [{ snapshot: h.base }], network: opts.network ?? 'none' }, c);
}

/** Collects a process's output; `until(text)` waits for it to appear. */
function collector() {
  let text = '';
  const waiters: { want: string | RegExp; resolve: () => void }[] = [];
  const matches = (w: string | RegExp) => (typeof w === 'string' ? text.includes(w) : w.test(text));
  return {
    write: (d: Uint8Array) => {
      text += Buffer.from(d).toString();
      for (const w of waiters.splice(0)) (matches(w.want) ? w.resolve() : waiters.push(w));
    },
    get text() {
      return text;
    },
    until(want: string | RegExp, ms = 10_000): Promise<void> {
      if (matches(want)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${want}; output so far: ${JSON.stringify(text)}`)), ms);
        waiters.push({ want, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
  };
}

function runcIds(): string[] {
  const out = execFileSync('runc', ['--root', join(h.root, 'runc', 'state'), 'list', '-q'], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean);
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1])
    .filter((p) => p && p.startsWith(dir));
}

describe('ExecOpExecutor as a ContainerProvider (real runc)', () => {
  it('declares the capability', () => {
    expect(isContainerProvider(h.executor)).toBe(true);
  });

  it('runs several processes in one container; the first is its init', async () => {
    const mountsBefore = mountsUnder(h.root).length;
    const c = await newContainer();
    const init = collector();
    const first = await c.start({ args: ['/bin/sh', '-c', 'echo init-up; echo from-init > /tmp/shared; exec sleep 600'] }, { stdout: init.write });
    await init.until('init-up');
    const a = collector();
    const b = collector();
    const [pa, pb2] = await Promise.all([
      c.start({ args: ['/bin/sh', '-c', 'cat /tmp/shared; echo $$ > /tmp/a; sleep 1; echo a-done'] }, { stdout: a.write }),
      c.start({ args: ['/bin/sh', '-c', 'echo b-err >&2; exit 4'], cwd: '/tmp', env: ['X=1'] }, { stderr: b.write }),
    ]);
    expect(c.processes().length).toBeGreaterThanOrEqual(2);
    expect(await pb2.wait()).toBe(4);
    expect(b.text).toBe('b-err\n');
    expect(await pa.wait()).toBe(0);
    expect(a.text).toBe('from-init\na-done\n');
    expect(c.processes()).toEqual([first.id]);
    expect(runcIds()).toContain(c.id);

    await c.release();
    await expect(first.wait()).rejects.toSatisfy((e) => isBktError(e, 'CANCELLED'));
    expect(runcIds()).not.toContain(c.id);
    expect(mountsUnder(h.root).length).toBe(mountsBefore);
    expect(existsSync(join(h.root, 'runc', 'bundles', c.id))).toBe(false);
    await expect(c.start({ args: ['true'] })).rejects.toSatisfy((e) => isBktError(e, 'NOT_FOUND'));
    await c.release(); // idempotent
  });

  it('feeds stdin; a process after the init exited is NOT_FOUND', async () => {
    const c = await newContainer();
    try {
      const stdin = new PassThrough();
      const out = collector();
      const p = await c.start({ args: ['/bin/sh', '-c', 'read line; echo "got $line"'] }, { stdin, stdout: out.write });
      stdin.end('hello\n');
      expect(await p.wait()).toBe(0);
      expect(out.text).toBe('got hello\n');
      await expect(c.start({ args: ['true'] })).rejects.toSatisfy((e) => isBktError(e, 'NOT_FOUND') && /first process has exited/.test((e as Error).message));
    } finally {
      await c.release();
    }
  });

  it('gives a process a terminal of the asked size and resizes it (SIGWINCH)', async () => {
    const c = await newContainer();
    try {
      const stdin = new PassThrough();
      const out = collector();
      const p = await c.start(
        { args: ['/bin/sh', '-c', '[ -t 0 ] && echo is-a-tty; sleep 0.5; stty size; trap "echo winched; stty size" WINCH; echo trapped; while :; do sleep 0.1; done'], tty: true, size: { rows: 30, cols: 100 } },
        { stdin, stdout: out.write },
      );
      // runc sizes the container's terminal just after the process starts.
      await out.until(/is-a-tty\r?\n(.*\r?\n)*30 100\r?\ntrapped/);
      await p.resize({ rows: 41, cols: 123 });
      await out.until(/winched\r?\n41 123/);
      // A second process with its own terminal beside the first.
      const out2 = collector();
      const p2 = await c.start({ args: ['/bin/sh', '-c', 'sleep 0.3; stty size; tty'], tty: true, size: { rows: 12, cols: 34 } }, { stdout: out2.write });
      expect(await p2.wait()).toBe(0);
      expect(out2.text).toMatch(/12 34\r?\n\/dev\/pts\/\d+/);
      await expect(p2.resize({ rows: 0, cols: 10 })).rejects.toSatisfy((e) => isBktError(e, 'INVALID_ARGUMENT'));
      // The init is the container's pid 1: only a signal it handles, or KILL, ends it.
      await p.signal('KILL');
      expect(await p.wait()).toBe(128 + 9);
    } finally {
      await c.release();
    }
    expect(runcIds()).not.toContain(c.id);
  });

  it('delivers signals to the init and to exec\'d processes; an unknown one is refused', async () => {
    const c = await newContainer();
    try {
      const out = collector();
      const init = await c.start({ args: ['/bin/sh', '-c', 'trap "echo init-usr1; exit 3" USR1; echo ready; while :; do sleep 0.1; done'] }, { stdout: out.write });
      await out.until('ready');
      const out2 = collector();
      const p = await c.start({ args: ['/bin/sh', '-c', 'trap "echo exec-hup; exit 5" HUP; echo ready2; while :; do sleep 0.1; done'] }, { stdout: out2.write });
      await out2.until('ready2');
      await expect(p.signal('NOPE')).rejects.toSatisfy((e) => isBktError(e, 'INVALID_ARGUMENT') && /NOPE/.test((e as Error).message));
      await p.signal('SIGHUP');
      expect(await p.wait()).toBe(5);
      expect(out2.text).toContain('exec-hup');
      await expect(p.resize({ rows: 10, cols: 10 })).rejects.toSatisfy((e) => isBktError(e, 'INVALID_ARGUMENT'));
      await init.signal('usr1');
      expect(await init.wait()).toBe(3);
      expect(out.text).toContain('init-usr1');
    } finally {
      await c.release();
    }
  });

  it('refuses host networking and insecure processes without the entitlements, naming them', async () => {
    await expect(newContainer({ network: 'host' })).rejects.toSatisfy((e) => isBktError(e, 'PERMISSION_DENIED') && /network\.host/.test((e as Error).message));
    const c = await newContainer();
    try {
      await expect(c.start({ args: ['true'], security: 'insecure' })).rejects.toSatisfy((e) => isBktError(e, 'PERMISSION_DENIED') && /security\.insecure/.test((e as Error).message));
    } finally {
      await c.release();
    }
  });

  it('is released with its build (onFinish)', async () => {
    const t = testBuildContext({ root: h.root, snapshotter: h.store.snapshotter, content: h.store.content, records: h.store.records });
    const c = await h.executor.newContainer({ mounts: [rootMount()], inputs: [{ snapshot: h.base }], network: 'none' }, t.ctx);
    const out = collector();
    const p: ContainerProcess = await c.start({ args: ['/bin/sh', '-c', 'echo up; exec sleep 600'] }, { stdout: out.write });
    await out.until('up');
    await t.finish();
    await expect(p.wait()).rejects.toBeTruthy();
    expect(runcIds()).not.toContain(c.id);
    expect(c.processes()).toEqual([]);
  });

  it('a failed step keeps its input and writable mounts as the process left them', async () => {
    const err = await runStep(h, 'mkdir -p /work && echo partial > /work/made-by-step; echo x > /out/o; exit 1', {
      meta: { cwd: '/work' },
      mounts: [{ input: -1, dest: '/out', output: 1 }],
      extraContext: { vertex: { digest: `sha256:${'a'.repeat(64)}`, name: '[1/1] RUN fails' } },
    }).catch((e) => e);
    expect(isBktError(err, 'EXEC_FAILED')).toBe(true);
    const failed = failedExecOf(err)!;
    expect(failed).toBeDefined();
    expect(failed.opDigest).toBe(`sha256:${'a'.repeat(64)}`);
    expect(failed.inputs).toEqual([h.base]);
    expect(failed.mounts).toHaveLength(2);
    const [root, out] = failed.mounts;
    const view = await root!.mount();
    try {
      expect(await readFile(join(view.path, 'work/made-by-step'), 'utf8')).toBe('partial\n');
    } finally {
      await view.release();
    }
    // Recreate the container: the mounts over the kept trees, as a debugger does.
    const op = failed.op as pb.ExecOp;
    const mounts = op.mounts.map((m, i) => pb.Mount.fromPartial({ ...m, input: failed.mounts[i] ? failed.inputs.length + i : m.input }));
    const inputs = [...failed.inputs, ...failed.mounts].map((snapshot) => ({ snapshot }));
    const c = await h.executor.newContainer({ mounts, inputs, network: 'none' }, ctx);
    try {
      const o = collector();
      const p = await c.start({ args: ['/bin/sh', '-c', 'pwd; cat made-by-step /out/o'], cwd: op.meta!.cwd }, { stdout: o.write });
      expect(await p.wait()).toBe(0);
      expect(o.text).toBe('/work\npartial\nx\n');
    } finally {
      await c.release();
    }
    expect(out).not.toBeNull();
  });
});
