import { describe, expect, it } from 'vitest';
import type { ProgressEvent } from '@bkt/core';
import { BuildTracker } from './builds.js';

const log = (msg: string): ProgressEvent => ({ type: 'log', log: { vertex: 'sha256:a', timestamp: new Date(), stream: 1, msg: Buffer.from(msg) } });
const info = { frontend: '', frontendAttrs: {}, exporters: [] };

async function all(it: AsyncIterable<ProgressEvent[]>): Promise<string[]> {
  const out: string[] = [];
  for await (const batch of it) for (const e of batch) if (e.type === 'log') out.push(Buffer.from(e.log.msg).toString());
  return out;
}

describe('BuildTracker', () => {
  it('a subscriber that joins before the build, during it or after it gets every event; the stream ends with the build', async () => {
    const t = new BuildTracker();
    const early = all(t.progress('r1', new AbortController().signal));
    const b = t.start('r1', info);
    b.onProgress(log('one'));
    const during = all(t.progress('r1', new AbortController().signal));
    await new Promise((r) => setTimeout(r, 5));
    b.onProgress(log('two'));
    b.finish();
    const late = all(t.progress('r1', new AbortController().signal));
    for (const got of [await early, await during, await late]) expect(got).toEqual(['one', 'two']);
  });

  it('NOT_FOUND when no build of that ref starts in time; a running ref cannot start twice', async () => {
    const t = new BuildTracker({ waitForStartMs: 20 });
    await expect(all(t.progress('nope', new AbortController().signal))).rejects.toThrow(/no build with ref nope/);
    t.start('r2', info);
    expect(() => t.start('r2', info)).toThrow(/already running/);
  });

  it('events: started (with a running record) and completed; idle once nothing runs', async () => {
    const t = new BuildTracker();
    const seen: string[] = [];
    t.subscribe((e) => seen.push(`${e.type} ${e.ref}${e.type === 'started' ? ` ${e.record.status}` : ''}`));
    const b = t.start('r3', info);
    const idle = t.idle();
    b.finish();
    await idle;
    expect(seen).toEqual(['started r3 running', 'completed r3']);
    expect(t.running()).toEqual([]);
  });
});
