import { describe, expect, it } from 'vitest';
import { MAX_MESSAGE_DATA, messagePieces } from './tunnel.js';

const sizes = (messages: Buffer[][]) => messages.map((m) => m.reduce((n, p) => n + p.length, 0));

describe('messagePieces', () => {
  it('keeps one chunk of at most the limit as one message, the same buffer', () => {
    const chunk = Buffer.alloc(MAX_MESSAGE_DATA);
    const [[only], ...rest] = messagePieces([chunk]);
    expect(only).toBe(chunk);
    expect(rest).toEqual([]);
  });

  it('joins chunks and splits them at the limit, in order', () => {
    const chunks = [Buffer.from('ab'), Buffer.from('cdefg'), Buffer.alloc(0), Buffer.from('hi'), Buffer.from('jklmnopq')];
    const messages = messagePieces(chunks, 4);
    expect(sizes(messages)).toEqual([4, 4, 4, 4, 1]);
    expect(messages.map((m) => Buffer.concat(m).toString())).toEqual(['abcd', 'efgh', 'ijkl', 'mnop', 'q']);
    expect(sizes(messagePieces([Buffer.alloc(2 * MAX_MESSAGE_DATA + 1)]))).toEqual([MAX_MESSAGE_DATA, MAX_MESSAGE_DATA, 1]);
  });
});
