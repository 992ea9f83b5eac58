import { describe, expect, it } from 'vitest';
import { StepOutput } from './output.js';

function recorder() {
  const logs: { stream: number; text: string }[] = [];
  const progress = {
    log: (stream: 1 | 2, msg: Uint8Array | string) => logs.push({ stream, text: typeof msg === 'string' ? msg : Buffer.from(msg).toString() }),
    status: () => {},
    warn: () => {},
  };
  return { logs, progress };
}

describe('StepOutput', () => {
  it('forwards output until the limit, then says it clips, once', () => {
    const { logs, progress } = recorder();
    const out = new StepOutput(progress, 10);
    out.write(1, Buffer.from('12345'));
    out.write(2, Buffer.from('6789abcdef'));
    out.write(1, Buffer.from('more'));
    expect(logs).toEqual([
      { stream: 1, text: '12345' },
      { stream: 2, text: '6789a' },
      { stream: 2, text: '\n[output clipped, log limit 10B reached]\n' },
    ]);
    expect(out.clipped).toBe(true);
  });

  it('keeps the last lines of everything written, clipped or not', () => {
    const { progress } = recorder();
    const out = new StepOutput(progress, 4);
    for (let i = 1; i <= 30; i++) out.write(i % 2 ? 1 : 2, Buffer.from(`line ${i}\n`));
    expect(out.lastLines(3)).toEqual(['line 28', 'line 29', 'line 30']);
    expect(out.lastLines()).toHaveLength(20);
  });

  it('has no limit when maxBytes is 0', () => {
    const { logs, progress } = recorder();
    const out = new StepOutput(progress, 0);
    out.write(1, Buffer.alloc(5_000_000, 'x'));
    expect(logs).toHaveLength(1);
    expect(out.clipped).toBe(false);
  });

  it('hands what it clips to the history, so displayed plus history-only output is every byte, the notice for displays only', () => {
    const shown: { stream: number; text: string; only?: string }[] = [];
    const hidden: { stream: number; text: string }[] = [];
    const progress = {
      log: (stream: 1 | 2, msg: Uint8Array | string, only?: 'display') => shown.push({ stream, text: Buffer.from(msg).toString(), ...(only ? { only } : {}) }),
      logHistoryOnly: (stream: 1 | 2, msg: Uint8Array) => hidden.push({ stream, text: Buffer.from(msg).toString() }),
      status: () => {},
      warn: () => {},
    };
    const out = new StepOutput(progress, 10);
    out.write(1, Buffer.from('12345'));
    out.write(2, Buffer.from('6789abcdef'));
    out.write(1, Buffer.from('more'));
    expect(shown).toEqual([
      { stream: 1, text: '12345' },
      { stream: 2, text: '6789a' },
      { stream: 2, text: '\n[output clipped, log limit 10B reached]\n', only: 'display' },
    ]);
    expect(hidden).toEqual([
      { stream: 2, text: 'bcdef' },
      { stream: 1, text: 'more' },
    ]);
  });
});
