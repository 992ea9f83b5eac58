import { describe, expect, it } from 'vitest';
import { isBktError, type Digest, type ProgressEvent } from '@bkt/core';
import type { BuildHistoryRecord } from '@bkt/solver';
import { buildName, formatDuration, readSteps, resolveBuild } from './history.js';
import { pickStep, printLogs } from './history-logs.js';

const record = (ref: string, extra: Partial<BuildHistoryRecord> = {}): BuildHistoryRecord => ({
  ref,
  frontend: '',
  frontendAttrs: {},
  exporters: [],
  status: 'completed',
  createdAt: new Date(0),
  completedAt: new Date(1000),
  numTotalSteps: 0,
  numCachedSteps: 0,
  numCompletedSteps: 0,
  exporterResponse: {},
  ...extra,
});

const errorOf = (fn: () => unknown): Error => {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('no error');
};

describe('resolveBuild', () => {
  const records = ['abc123', 'abd456', 'xyz789'].map((r) => record(r));

  it('takes latest or nothing for the newest, ^N for the Nth before it, a ref or a unique prefix', () => {
    expect(resolveBuild(records, undefined, '/root').ref).toBe('abc123');
    expect(resolveBuild(records, 'latest', '/root').ref).toBe('abc123');
    expect(resolveBuild(records, '^0', '/root').ref).toBe('abc123');
    expect(resolveBuild(records, '^2', '/root').ref).toBe('xyz789');
    expect(resolveBuild(records, 'abd456', '/root').ref).toBe('abd456');
    expect(resolveBuild(records, 'x', '/root').ref).toBe('xyz789');
  });

  it('names the ref that matches none, several or is out of range', () => {
    const unknown = errorOf(() => resolveBuild(records, 'nope', '/root'));
    expect(isBktError(unknown, 'NOT_FOUND')).toBe(true);
    expect(unknown.message).toBe('no build "nope" in the history of /root (bkt history ls lists them)');
    expect(errorOf(() => resolveBuild(records, 'ab', '/root')).message).toBe('build ref "ab" is ambiguous: it starts abc123, abd456');
    expect(errorOf(() => resolveBuild(records, '^3', '/root')).message).toBe('build ^3: the history of /root holds 3 builds (^0 is the latest, ^2 the oldest)');
    expect(errorOf(() => resolveBuild([], undefined, '/root')).message).toMatch(/build history of \/root is empty/);
  });
});

it('names builds and formats durations as buildx', () => {
  expect(buildName(record('a', { frontend: 'dockerfile.v0', frontendAttrs: { filename: 'app.Dockerfile', target: 'test' } }))).toBe('app.Dockerfile (test)');
  expect(buildName(record('a', { frontend: 'dockerfile.v0' }))).toBe('Dockerfile');
  expect(buildName(record('a'))).toBe('(llb)');
  expect([400, 12_345, 65_000, 7_380_000].map(formatDuration)).toEqual(['0.4s', '12.3s', '1m 05s', '2h 03m']);
});

const A = `sha256:${'a'.repeat(64)}` as Digest;
const B = `sha256:${'b'.repeat(64)}` as Digest;
const t = (ms: number) => new Date(1_000_000 + ms);

function events(): ProgressEvent[] {
  const log = (vertex: Digest, stream: number, text: string | Buffer, ms: number): ProgressEvent => ({
    type: 'log',
    log: { vertex, stream, timestamp: t(ms), msg: typeof text === 'string' ? Buffer.from(text) : text },
  });
  return [
    { type: 'vertex', vertex: { digest: A, inputs: [], name: 'RUN big', cached: false, started: t(0) } },
    { type: 'vertex', vertex: { digest: B, inputs: [], name: 'COPY x', cached: true, started: t(0), completed: t(0) } },
    log(A, 1, 'first\nsec', 100),
    log(A, 2, 'oops\n', 150),
    log(A, 1, 'ond\n', 200),
    log(A, 1, Buffer.alloc(3 * 1024 * 1024, 'y'), 300),
    { type: 'vertex', vertex: { digest: A, inputs: [], name: 'RUN big', cached: false, started: t(0), completed: t(1500) } },
  ];
}

async function* replay(list: ProgressEvent[], opts: { logs?: boolean } = {}): AsyncGenerator<ProgressEvent> {
  for (const e of list) if (opts.logs !== false || e.type !== 'log') yield e;
}

function io() {
  const chunks = { out: [] as Buffer[], err: [] as Buffer[] };
  return {
    io: {
      stdin: process.stdin,
      stdout: { write: (c: string | Uint8Array) => chunks.out.push(Buffer.from(c)) },
      stderr: { write: (c: string | Uint8Array) => chunks.err.push(Buffer.from(c)) },
      cwd: '/',
    },
    out: () => Buffer.concat(chunks.out),
    err: () => Buffer.concat(chunks.err),
  };
}

describe('history logs', () => {
  it('prints the build as --progress plain, clipping a step past 2 MiB with the command printing all of it', async () => {
    const steps = await readSteps({ progress: (_ref, o) => replay(events(), o) }, 'ref1');
    expect(steps.map((s) => [s.index, s.name, s.cached])).toEqual([
      [1, 'RUN big', false],
      [2, 'COPY x', true],
    ]);
    const o = io();
    await printLogs('ref1', steps, replay(events()), {}, o.io);
    const lines = o.out().toString().split('\n');
    expect(lines.slice(0, 7)).toEqual(['#2 COPY x', '#2 CACHED', '', '#1 RUN big', '#1 0.100 first', '#1 0.150 oops', '#1 0.200 second']);
    expect(lines).toContain('#1 [output clipped, log limit 2MiB reached: all of it with bkt history logs ref1 --step 1 (--raw for its exact bytes)]');
    expect(lines.at(-2)).toBe('#1 DONE 1.5s');
    expect(o.out().length).toBeLessThan(2.2 * 1024 * 1024);
  });

  it('--step --raw writes the step output exactly: stdout to stdout, stderr to stderr', async () => {
    const steps = await readSteps({ progress: (_ref, o) => replay(events(), o) }, 'ref1');
    const o = io();
    await printLogs('ref1', steps, replay(events()), { step: '1', raw: true }, o.io);
    expect(o.out().equals(Buffer.concat([Buffer.from('first\nsecond\n'), Buffer.alloc(3 * 1024 * 1024, 'y')]))).toBe(true);
    expect(o.err().toString()).toBe('oops\n');
  });

  it('--step picks a step by number or digest prefix, and names a bad one', async () => {
    const steps = await readSteps({ progress: (_ref, o) => replay(events(), o) }, 'ref1');
    expect(pickStep(steps, '#2', 'r').digest).toBe(B);
    expect(pickStep(steps, 'sha256:aaaa', 'r').digest).toBe(A);
    expect(pickStep(steps, 'bb', 'r').digest).toBe(B);
    expect(errorOf(() => pickStep(steps, '3', 'r')).message).toBe('--step 3: build r has steps #1 to #2');
    expect(errorOf(() => pickStep(steps, 'cc', 'r')).message).toMatch(/^--step cc: no step of build r has that digest/);
    expect(errorOf(() => pickStep(steps, 'RUN', 'r')).message).toMatch(/^--step RUN: expected a step number/);
  });
});
