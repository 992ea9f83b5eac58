import { describe, expect, it } from 'vitest';
import type { ProgressEvent } from '@bkt/core';
import { control } from '@bkt/api';
import { progressEvents, statusResponse } from './progress.js';

const bytes = (s: string) => new TextEncoder().encode(s);
const at = (ms: number) => new Date(Date.UTC(2024, 0, 1) + ms);
const A = `sha256:${'a'.repeat(64)}` as const;
const B = `sha256:${'b'.repeat(64)}` as const;

/** A build as the solver reports it: two steps, their output interleaved, a status, a warning, a failure. */
const events: ProgressEvent[] = [
  { type: 'vertex', vertex: { digest: A, inputs: [], name: '[1/2] FROM busybox', cached: false } },
  { type: 'vertex', vertex: { digest: B, inputs: [A], name: '[2/2] RUN make', cached: false } },
  { type: 'vertex', vertex: { digest: A, inputs: [], name: '[1/2] FROM busybox', cached: true, started: at(0), completed: at(0) } },
  { type: 'vertex', vertex: { digest: B, inputs: [A], name: '[2/2] RUN make', cached: false, started: at(0), progressGroup: { id: 'g', name: 'group', weak: true } } },
  { type: 'log', log: { vertex: B, timestamp: at(1), stream: 1, msg: bytes('compiling\n') } },
  { type: 'status', status: { id: 'pull', vertex: B, name: 'pulling', current: 5, total: 10, timestamp: at(2), started: at(2) } },
  { type: 'log', log: { vertex: B, timestamp: at(3), stream: 2, msg: bytes('error: no rule\n') } },
  { type: 'vertex', vertex: { digest: B, inputs: [A], name: '[2/2] RUN make', cached: false, started: at(0), completed: at(3), error: 'exit code: 2', progressGroup: { id: 'g', name: 'group', weak: true } } },
  {
    type: 'warning',
    warning: { vertex: B, level: 1, short: 'JSONArgsRecommended: use JSON', detail: ['why', 'more'], url: 'https://docs/x', ranges: [{ start: { line: 2, character: 0 }, end: { line: 2, character: 9 } }] },
  },
];

describe('progress on the wire (Control.Status)', () => {
  it('round-trips events through a StatusResponse in the order they happened', () => {
    const wire = control.StatusResponse.decode(control.StatusResponse.encode(statusResponse(events)).finish());
    expect(progressEvents(wire)).toEqual(events);
  });

  it('keeps per-event responses as they are, and millisecond times exactly', () => {
    const back = events.flatMap((e) => progressEvents(control.StatusResponse.decode(control.StatusResponse.encode(statusResponse([e])).finish())));
    expect(back).toEqual(events);
  });

  it('puts a vertex starting before the output stamped with its start time, and its completion after it', () => {
    const start: ProgressEvent = { type: 'vertex', vertex: { digest: A, inputs: [], name: 'x', cached: false, started: at(5) } };
    const line: ProgressEvent = { type: 'log', log: { vertex: A, timestamp: at(5), stream: 1, msg: bytes('hi\n') } };
    const done: ProgressEvent = { type: 'vertex', vertex: { digest: A, inputs: [], name: 'x', cached: false, started: at(5), completed: at(5) } };
    expect(progressEvents(statusResponse([start, line, done]))).toEqual([start, line, done]);
  });

  it('an empty response is no event', () => {
    expect(progressEvents(control.StatusResponse.fromPartial({}))).toEqual([]);
  });
});
