import { describe, expect, it } from 'vitest';
import type { Digest, ProgressEvent } from '@bkt/core';
import { createDisplay } from './displays.js';

const A = `sha256:${'a'.repeat(64)}` as Digest;
const B = `sha256:${'b'.repeat(64)}` as Digest;
const t0 = new Date('2024-01-01T00:00:00.000Z');
const at = (ms: number) => new Date(t0.getTime() + ms);

function sink(isTTY = false) {
  const chunks: string[] = [];
  return { out: { write: (s: string) => chunks.push(s), isTTY, columns: 60 }, text: () => chunks.join('') };
}

const events: ProgressEvent[] = [
  { type: 'vertex', vertex: { digest: A, inputs: [], name: '[internal] load local context', cached: true, started: t0, completed: t0 } },
  { type: 'vertex', vertex: { digest: B, inputs: [A], name: 'mkfile /hello', cached: false, started: at(0) } },
  { type: 'log', log: { vertex: B, timestamp: at(10), stream: 1, msg: Buffer.from('line one\nline ') } },
  { type: 'log', log: { vertex: B, timestamp: at(20), stream: 1, msg: Buffer.from('two\n') } },
  { type: 'status', status: { id: 'copying', vertex: B, name: 'copying', current: 5, total: 10, timestamp: at(30) } },
  { type: 'vertex', vertex: { digest: B, inputs: [A], name: 'mkfile /hello', cached: false, started: at(0), completed: at(1234) } },
];

describe('plain display', () => {
  it('prints every line of a large output chunk (the trace keeps only the last ones)', () => {
    const { out, text } = sink();
    const d = createDisplay('plain', out);
    d.write(events[1]!);
    const many = Array.from({ length: 1000 }, (_, i) => `l${i}`).join('\n') + '\n';
    d.write({ type: 'log', log: { vertex: B, timestamp: at(10), stream: 1, msg: Buffer.from(many) } });
    d.close();
    const printed = text().split('\n').filter((l) => /^#1 \d+\.\d{3} l\d+$/.test(l)).map((l) => l.split(' ')[2]);
    expect(printed).toEqual(Array.from({ length: 1000 }, (_, i) => `l${i}`));
  });

  it('prints BuildKit-style numbered steps, CACHED and DONE with the step time', () => {
    const { out, text } = sink();
    const d = createDisplay('auto', out);
    for (const e of events) d.write(e);
    d.close();
    const lines = text().split('\n');
    expect(lines[0]).toBe('#1 [internal] load local context');
    expect(lines[1]).toBe('#1 CACHED');
    expect(lines[2]).toBe('');
    expect(lines[3]).toBe('#2 mkfile /hello');
    expect(lines[4]).toMatch(/^#2 \d+\.\d{3} line one$/);
    expect(lines[5]).toMatch(/^#2 \d+\.\d{3} line two$/);
    expect(lines[6]).toBe('#2 copying 5/10');
    expect(lines[7]).toBe('#2 DONE 1.2s');
  });

  it('prints a failed step with ERROR and keeps its output for the report', () => {
    const { out, text } = sink();
    const d = createDisplay('plain', out);
    d.write({ type: 'vertex', vertex: { digest: A, inputs: [], name: 'copy /x', cached: false, started: t0 } });
    d.write({ type: 'log', log: { vertex: A, timestamp: t0, stream: 2, msg: Buffer.from('no such file\n') } });
    d.write({ type: 'vertex', vertex: { digest: A, inputs: [], name: 'copy /x', cached: false, started: t0, completed: at(5), error: 'not found' } });
    expect(text()).toContain('#1 ERROR: not found\n');
    expect(d.trace.failed().map((v) => v.name)).toEqual(['copy /x']);
    expect(d.trace.lastLines(d.trace.failed()[0]!, 10)).toEqual(['no such file']);
  });
});

describe('rawjson display', () => {
  it('writes one StatusResponse-shaped JSON object per event', () => {
    const { out, text } = sink();
    const d = createDisplay('rawjson', out);
    for (const e of events) d.write(e);
    const objs = text().trim().split('\n').map((l) => JSON.parse(l));
    expect(objs).toHaveLength(events.length);
    expect(objs[0].vertexes[0]).toMatchObject({ digest: A, cached: true, name: '[internal] load local context' });
    expect(Buffer.from(objs[2].logs[0].data, 'base64').toString()).toBe('line one\nline ');
    expect(objs[4].statuses[0]).toMatchObject({ id: 'copying', current: 5, total: 10 });
  });
});

describe('tty display', () => {
  it('redraws the step tree in place and ends with a final frame', () => {
    const { out, text } = sink(true);
    const d = createDisplay('auto', out);
    for (const e of events) d.write(e);
    d.close();
    const s = text();
    expect(s).toContain('[+] Finished');
    expect(s).toContain('(2/2)');
    expect(s).toMatch(/=> CACHED \[internal\] load local context/);
    expect(s).toMatch(/=> mkfile \/hello +1\.2s/);
    // A second frame moves the cursor up over the first one.
    d.write(events[1]!);
    d.close();
    expect(text().slice(s.length)).toMatch(/^\x1b\[3A/);
  });

  it('keeps a live frame within the terminal height', () => {
    const chunks: string[] = [];
    const d = createDisplay('tty', { write: (s: string) => chunks.push(s), isTTY: true, columns: 80, rows: 4 });
    for (let i = 0; i < 10; i++) {
      const digest = `sha256:${String(i).repeat(64)}` as Digest;
      d.write({ type: 'vertex', vertex: { digest, inputs: [], name: `step ${i}`, cached: true, started: t0, completed: t0 } });
    }
    (d as unknown as { draw(final: boolean): void }).draw(false);
    const frame = chunks.at(-1)!;
    expect(frame.split('\n').length - 1).toBe(3);
    expect(frame).toContain('step 9');
    expect(frame).not.toContain('step 0');
    d.close();
    expect(chunks.at(-1)!).toContain('step 0'); // the final frame shows every step
  });
});

describe('text from the build is terminal-safe in plain and tty modes, raw in rawjson', () => {
  const hostile = '\x1b]0;pwned\x07\x1b[2J\x9b31m';
  const steps: ProgressEvent[] = [
    { type: 'vertex', vertex: { digest: A, inputs: [], name: `RUN echo ${hostile}`, cached: false, started: t0 } },
    { type: 'log', log: { vertex: A, timestamp: t0, stream: 1, msg: Buffer.from(`out ${hostile}\nbar 10%\rbar 100%\n`) } },
    { type: 'warning', warning: { vertex: A, level: 1, short: `warn ${hostile}`, detail: [] } },
    { type: 'vertex', vertex: { digest: A, inputs: [], name: `RUN echo ${hostile}`, cached: false, started: t0, completed: at(5), error: `failed ${hostile}` } },
  ];

  it('plain: control characters in caret notation, a carriage return keeps the last text', () => {
    const { out, text } = sink();
    const d = createDisplay('plain', out);
    for (const e of steps) d.write(e);
    d.close();
    expect(text()).not.toMatch(/[\x1b\x07\x9b]/);
    expect(text()).toContain('#1 RUN echo ^[]0;pwned^G^[[2J<U+009B>31m\n');
    expect(text()).toMatch(/#1 \d+\.\d{3} out \^\[\]0;pwned/);
    expect(text()).toMatch(/#1 \d+\.\d{3} bar 100%\n/);
    expect(text()).toContain('#1 WARN: warn ^[]0;pwned');
    expect(text()).toContain('#1 ERROR: failed ^[]0;pwned');
  });

  it('tty: only the display\'s own cursor and colour sequences', () => {
    const { out, text } = sink(true);
    const d = createDisplay('tty', out);
    for (const e of steps) d.write(e);
    d.close();
    const withoutOwn = text().replace(/\x1b\[(\d+A|2K|J|\d+m)/g, '');
    expect(withoutOwn).not.toMatch(/[\x1b\x07\x9b]/);
    expect(withoutOwn).toContain('^[]0;pwned');
  });

  it('rawjson: the bytes as they were', () => {
    const { out, text } = sink();
    const d = createDisplay('rawjson', out);
    for (const e of steps) d.write(e);
    const objs = text().trim().split('\n').map((l) => JSON.parse(l));
    expect(objs[0].vertexes[0].name).toBe(`RUN echo ${hostile}`);
    expect(Buffer.from(objs[1].logs[0].data, 'base64').toString()).toContain(hostile);
  });
});

describe('failures and warnings', () => {
  const C = `sha256:${'c'.repeat(64)}` as Digest;
  const op = `sha256:${'d'.repeat(64)}`;
  const failing: ProgressEvent[] = [
    { type: 'vertex', vertex: { digest: A, inputs: [], name: '[a 2/2] RUN exit 3', cached: false, started: t0 } },
    { type: 'vertex', vertex: { digest: B, inputs: [], name: '[b 2/2] RUN sleep 5', cached: false, started: t0 } },
    { type: 'log', log: { vertex: A, timestamp: t0, stream: 2, msg: Buffer.from('giving up\n') } },
    { type: 'vertex', vertex: { digest: A, inputs: [], name: '[a 2/2] RUN exit 3', cached: false, started: t0, completed: at(100), error: `[a 2/2] RUN exit 3: exit code: 3 (op ${op})` } },
    { type: 'vertex', vertex: { digest: B, inputs: [], name: '[b 2/2] RUN sleep 5', cached: false, started: t0, completed: at(110), error: 'context canceled' } },
  ];
  const warned: ProgressEvent[] = [
    { type: 'vertex', vertex: { digest: C, inputs: [], name: '[internal] load build definition', cached: false, started: t0, completed: t0 } },
    { type: 'warning', warning: { vertex: C, level: 1, short: 'JSONArgsRecommended: JSON arguments recommended for CMD (line 3)', detail: [] } },
    { type: 'vertex', vertex: { digest: A, inputs: [], name: 'next step', cached: true, started: t0, completed: t0 } },
  ];

  it('plain: the failing step is ERROR with its own error (no name, no op), the step it stopped CANCELED', () => {
    const { out, text } = sink();
    const d = createDisplay('plain', out);
    for (const e of failing) d.write(e);
    expect(d.mode).toBe('plain');
    expect(text()).toContain('#1 ERROR: exit code: 3\n');
    expect(text()).toContain('#2 CANCELED\n');
    expect(text()).not.toContain(op);
    expect(d.trace.failed().map((v) => v.name)).toEqual(['[a 2/2] RUN exit 3']);
  });

  it('plain: a warning on a step that already completed is printed', () => {
    const { out, text } = sink();
    const d = createDisplay('plain', out);
    for (const e of warned) d.write(e);
    expect(text()).toContain('#1 WARN: JSONArgsRecommended: JSON arguments recommended for CMD (line 3)\n');
    // The next step does not mark the finished one as interrupted.
    expect(text()).not.toContain('#1 ...');
    expect(d.trace.warnings.map((w) => w.short)).toEqual(['JSONArgsRecommended: JSON arguments recommended for CMD (line 3)']);
  });

  it('tty: ERROR for the failing step (with its last lines), CANCELED for the other; NO_COLOR: no colour', () => {
    const colored = sink(true);
    const d = createDisplay('tty', colored.out);
    for (const e of failing) d.write(e);
    d.close();
    expect(d.mode).toBe('tty');
    expect(colored.text()).toMatch(/=> ERROR \[a 2\/2\] RUN exit 3 +0\.1s/);
    expect(colored.text()).toMatch(/=> => # giving up/);
    expect(colored.text()).toMatch(/=> CANCELED \[b 2\/2\] RUN sleep 5 +0\.1s/);
    expect(colored.text()).toMatch(/\x1b\[31m/);

    const plainTty = sink(true);
    const n = createDisplay('tty', plainTty.out, { color: false });
    for (const e of failing) n.write(e);
    n.close();
    expect(plainTty.text()).toMatch(/=> CANCELED \[b 2\/2\]/);
    expect(plainTty.text()).not.toMatch(/\x1b\[\d+m/);
  });
});
