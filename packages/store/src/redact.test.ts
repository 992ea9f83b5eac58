import { describe, expect, it } from 'vitest';
import { SecretValues } from './redact.js';

/** Feeds `chunks` through a stream redactor and returns everything it let out. */
function through(secrets: SecretValues, chunks: string[]): string {
  const r = secrets.stream();
  return chunks.map((c) => Buffer.from(r.push(Buffer.from(c))).toString()).join('') + Buffer.from(r.flush()).toString();
}

describe('SecretValues', () => {
  it('replaces values in text, the longest first, and a value with and without its trailing newline', () => {
    const s = new SecretValues();
    s.add(Buffer.from('abc\n'));
    s.add(Buffer.from('abcdef'));
    expect(s.text('x abcdef y abc z abc\n')).toBe('x *** y *** z ***');
  });

  it('redacts a stream whatever the chunk boundaries', () => {
    const s = new SecretValues();
    s.add(Buffer.from('s3cr3t'));
    const text = 'one s3cr3t two s3cr3ts3cr3t three s3cr';
    const want = 'one *** two ****** three s3cr';
    for (let cut = 0; cut <= text.length; cut++) expect(through(s, [text.slice(0, cut), text.slice(cut)])).toBe(want);
    expect(through(s, [...text])).toBe(want);
  });

  it('passes chunks through untouched while the build has no secret, and redacts from when it gets one', () => {
    const s = new SecretValues();
    const r = s.stream();
    const chunk = Buffer.from('plain s3cr3t');
    expect(r.push(chunk)).toBe(chunk);
    s.add(Buffer.from('s3cr3t'));
    expect(Buffer.from(r.push(Buffer.from('then s3cr3t'))).toString() + Buffer.from(r.flush()).toString()).toBe('then ***');
  });
});
