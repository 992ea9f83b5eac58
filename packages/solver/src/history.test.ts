/** Build history: what a solve records in the metadata DB, and that secrets never reach it. */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { BktError, createBkt, isBktError, type BktPlugin, type ProgressEvent } from '@bkt/core';
import type { Solver, SolverOptions } from './api.js';
import { openSolver } from './solver.js';
import { DefBuilder, testPlugin } from './graphs.test-util.js';

const SECRET = 'hunter2-s3cr3t-value';
const TOKEN = 'tok-value-7f3a9c';

let root: string;
let solver: Solver | undefined;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-history-'));
});

afterEach(async () => {
  await solver?.close();
  solver = undefined;
  await rm(root, { recursive: true, force: true });
});

/** A frontend that reads secret `tok` and, with attr `fail`, fails naming it; an exporter echoing it back. */
const secretive: BktPlugin = {
  name: 'test-secretive',
  frontends: [
    {
      name: 'secretive.v0',
      async solve(attrs, bridge, ctx) {
        const secret = new TextDecoder().decode((await ctx.secrets.get('tok')) ?? new Uint8Array());
        if (attrs.fail) throw new BktError('EXEC_FAILED', `process "echo ${secret}" did not complete successfully: exit code: 1`);
        const g = new DefBuilder();
        return bridge.solve(g.build(g.mkfile(null, { '/out': 'x' })));
      },
    },
  ],
  exporters: [
    {
      type: 'echo',
      async resolve() {
        return { export: async (_result, ctx) => ({ 'echo.done': 'yes', 'echo.secret': new TextDecoder().decode((await ctx.secrets.get('tok')) ?? new Uint8Array()) }) };
      },
    },
  ],
};

async function open(extra: Partial<SolverOptions> = {}, delayMs?: number): Promise<Solver> {
  solver = await openSolver({ root, bkt: await createBkt([testPlugin({ delayMs }), secretive]), ...extra });
  return solver;
}

function twoSteps(): Uint8Array {
  const g = new DefBuilder();
  return g.build(g.mkfile(g.mkfile(null, { '/a': 'a' }), { '/b': 'b' }));
}

it('records each solve (status, times, steps, exporters, response), newest first', async () => {
  const s = await open();
  const first = await s.solve({ definition: twoSteps(), exporters: [{ type: 'echo', attrs: { name: 'x' } }], buildId: 'first' });
  const second = await s.solve({ definition: twoSteps(), buildId: 'second' });
  expect(second.stats.cached).toBe(2);

  const builds = await s.listBuilds();
  expect(builds.map((b) => b.ref)).toEqual(['second', 'first']);
  const [b2, b1] = builds;
  expect(b1).toMatchObject({
    status: 'completed',
    frontend: '',
    exporters: [{ type: 'echo', attrs: { name: 'x' } }],
    numTotalSteps: 3, // two ops and the export
    numCachedSteps: 0,
    numCompletedSteps: 3,
  });
  expect(b1.error).toBeUndefined();
  expect(b1.exporterResponse['echo.done']).toBe('yes');
  expect(b1.completedAt!.getTime()).toBeGreaterThanOrEqual(b1.createdAt.getTime());
  expect(first.exporterResponse['echo.done']).toBe('yes');
  expect(b2).toMatchObject({ status: 'completed', numTotalSteps: 2, numCachedSteps: 2, numCompletedSteps: 2 });

  expect((await s.listBuilds({ limit: 1 })).map((b) => b.ref)).toEqual(['second']);
  expect((await s.listBuilds({ ref: 'first' })).map((b) => b.ref)).toEqual(['first']);
  expect(await s.listBuilds({ ref: 'nope' })).toEqual([]);
});

it('records failures and cancellations with their error; secrets never reach the database', async () => {
  const s = await open({}, 800);
  const secrets = { get: async (id: string) => (id === 'tok' ? new TextEncoder().encode(`${SECRET}\n`) : null) };
  const frontendAttrs = { 'build-arg:API_TOKEN': TOKEN, note: `inline ${SECRET} here` };

  const failed = await s.solve({ frontend: 'secretive.v0', frontendAttrs: { ...frontendAttrs, fail: '1' }, secrets, buildId: 'failed' }).catch((e: unknown) => e);
  expect(isBktError(failed, 'EXEC_FAILED')).toBe(true);
  expect((failed as Error).message).toContain(SECRET); // the caller sees its own error as is

  const ac = new AbortController();
  setTimeout(() => ac.abort(), 100);
  const cancelled = await s.solve({ definition: twoSteps(), signal: ac.signal, buildId: 'cancelled' }).catch((e: unknown) => e);
  expect(isBktError(cancelled, 'CANCELLED')).toBe(true);

  const [c, f] = await s.listBuilds();
  expect(c).toMatchObject({ ref: 'cancelled', status: 'cancelled', error: { code: 'CANCELLED' } });
  expect(f).toMatchObject({ ref: 'failed', status: 'failed', frontend: 'secretive.v0', error: { code: 'EXEC_FAILED' } });
  expect(f.error!.message).toBe('process "echo ***" did not complete successfully: exit code: 1');
  expect(f.frontendAttrs).toEqual({ 'build-arg:API_TOKEN': '***', note: 'inline *** here', fail: '1' });

  // An exporter response carrying the secret is stored redacted.
  const ok = await s.solve({ frontend: 'secretive.v0', frontendAttrs, secrets, exporters: [{ type: 'echo', attrs: {} }], buildId: 'ok' });
  expect(ok.exporterResponse['echo.secret']).toBe(`${SECRET}\n`);
  expect((await s.listBuilds({ ref: 'ok' }))[0].exporterResponse).toEqual({ 'echo.done': 'yes', 'echo.secret': '***' });

  await s.close();
  solver = undefined;
  for (const name of await readdir(root)) {
    if (!name.startsWith('metadata.db')) continue;
    const bytes = await readFile(join(root, name), 'latin1');
    expect(bytes).not.toContain(SECRET);
    expect(bytes).not.toContain(TOKEN);
  }
});

it('keeps at most maxEntries finished builds', async () => {
  const s = await open({ history: { maxEntries: 2 } });
  for (const ref of ['b1', 'b2', 'b3']) await s.solve({ definition: twoSteps(), buildId: ref });
  expect((await s.listBuilds()).map((b) => b.ref)).toEqual(['b3', 'b2']);
});

it('pins and deletes builds: a pinned build outlives maxEntries; deleted and trimmed builds are announced; a running one is not deleted', async () => {
  const s = await open({ history: { maxEntries: 1 } }, 300);
  const deleted: string[] = [];
  s.onBuildDeleted((ref) => deleted.push(ref));
  await s.solve({ definition: twoSteps(), buildId: 'kept' });
  await s.pinBuild('kept', true);
  for (const ref of ['b1', 'b2']) await s.solve({ definition: twoSteps(), buildId: ref });
  expect((await s.listBuilds()).map((b) => [b.ref, b.pinned])).toEqual([['b2', false], ['kept', true]]);
  expect(deleted).toEqual(['b1']);

  const g = new DefBuilder();
  // Not in the cache: its step runs for 300 ms.
  const running = s.solve({ definition: g.build(g.mkfile(null, { '/busy': 'busy' })), buildId: 'busy' });
  await new Promise((r) => setTimeout(r, 100));
  const refused = await s.deleteBuild('busy').catch((e: unknown) => e);
  expect(isBktError(refused, 'INVALID_ARGUMENT')).toBe(true);
  await running;
  await s.deleteBuild('kept');
  expect((await s.listBuilds()).map((b) => b.ref)).toEqual(['busy']);
  expect(deleted).toEqual(['b1', 'b2', 'kept']);
  await expect(s.pinBuild('kept', true)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  await expect(s.deleteBuild('kept')).rejects.toMatchObject({ code: 'NOT_FOUND' });
});


it("records every byte of a step's output, also what displays do not show; displays get only theirs", async () => {
  solver = await openSolver({
    root,
    bkt: await createBkt([
      testPlugin({
        onRun: (ctx) => {
          ctx.progress.log(1, 'shown\n');
          ctx.progress.log(2, '[a note for displays]\n', 'display');
          ctx.progress.logHistoryOnly?.(1, new TextEncoder().encode('kept\n'));
        },
      }),
    ]),
  });
  const g = new DefBuilder();
  const shown: ProgressEvent[] = [];
  await solver.solve({ definition: g.build(g.mkfile(null, { '/a': 'a' })), buildId: 'logs', onProgress: (e) => shown.push(e) });

  const recorded: ProgressEvent[] = [];
  for await (const e of solver.buildProgress('logs')) recorded.push(e);
  const text = (events: ProgressEvent[], stream: number) =>
    events.map((e) => (e.type === 'log' && e.log.stream === stream ? new TextDecoder().decode(e.log.msg) : '')).join('');
  expect(text(recorded, 1)).toBe('shown\nkept\nwrote /a\n');
  expect(text(recorded, 2)).toBe('');
  expect(text(shown, 1)).toBe('shown\nwrote /a\n');
  expect(text(shown, 2)).toBe('[a note for displays]\n');
  expect(shown.some((e) => e.type === 'log' && 'only' in e.log)).toBe(false);
  const vertexEvents = (events: ProgressEvent[]) => events.flatMap((e) => (e.type === 'vertex' ? [{ ...e.vertex }] : []));
  expect(vertexEvents(recorded)).toEqual(vertexEvents(shown));

  const missing: unknown = await (async () => {
    for await (const _ of solver!.buildProgress('unknown-ref')) void _;
  })().catch((e: unknown) => e);
  expect(isBktError(missing, 'NOT_FOUND')).toBe(true);
});
