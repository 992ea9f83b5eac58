import { describe, expect, it } from 'vitest';
import { defaultRoot, humanAgo, humanSize, parseBytes, parseDuration, parseLocalDirs, parseOutput, splitCsv } from './options.js';

describe('parseOutput', () => {
  it('parses buildx CSV specs and resolves a relative dest against the base dir', () => {
    expect(parseOutput('type=local,dest=out', '/work')).toEqual({ type: 'local', dest: '/work/out' });
    expect(parseOutput('type=tar,dest=/tmp/x.tar', '/work')).toEqual({ type: 'tar', dest: '/tmp/x.tar' });
    expect(parseOutput('type=tar,dest=-', '/work')).toEqual({ type: 'tar', dest: '-' });
    expect(parseOutput('"type=local","dest=a,b"', '/w')).toEqual({ type: 'local', dest: '/w/a,b' });
    expect(parseOutput('type=image,name=x,push=true', '/w')).toEqual({ type: 'image', name: 'x', push: 'true' });
  });

  it('takes buildx shorthands: a path is a local dest, - is a tar on stdout', () => {
    expect(parseOutput('out', '/w')).toEqual({ type: 'local', dest: '/w/out' });
    expect(parseOutput('-', '/w')).toEqual({ type: 'tar', dest: '-' });
  });

  it('rejects specs without a type, with a bad field or a repeated key', () => {
    expect(() => parseOutput('dest=out', '/w')).toThrow(/type is required/);
    expect(() => parseOutput('type=local,oops', '/w')).toThrow(/"oops" is not key=value/);
    expect(() => parseOutput('type=local,dest=a,dest=b', '/w')).toThrow(/"dest" given twice/);
    expect(() => splitCsv('"unterminated')).toThrow(/unterminated quote/);
  });
});

describe('parseDuration', () => {
  it('reads Go-style durations (and days) into milliseconds', () => {
    expect(parseDuration('24h')).toBe(86_400_000);
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('7d')).toBe(7 * 86_400_000);
    expect(parseDuration('0')).toBe(0);
  });
  it('rejects what it cannot read', () => {
    for (const bad of ['', '24', 'h', '1x', '1h 30m', '-1h']) expect(() => parseDuration(bad)).toThrow(/invalid duration/);
  });
});

describe('parseBytes', () => {
  it('reads sizes with binary units as docker does', () => {
    expect(parseBytes('10GB')).toBe(10 * 1024 ** 3);
    expect(parseBytes('512MB')).toBe(512 * 1024 ** 2);
    expect(parseBytes('512mib')).toBe(512 * 1024 ** 2);
    expect(parseBytes('1.5k')).toBe(1536);
    expect(parseBytes('1048576')).toBe(1048576);
    expect(parseBytes('100B')).toBe(100);
  });
  it('rejects what it cannot read', () => {
    for (const bad of ['', 'GB', '10XB', '-5MB', '10 G B']) expect(() => parseBytes(bad)).toThrow(/invalid size/);
  });
});

describe('misc', () => {
  it('picks the default root by user', () => {
    expect(defaultRoot({}, 0)).toBe('/var/lib/bkt');
    expect(defaultRoot({ XDG_DATA_HOME: '/home/u/.data' }, 1000)).toBe('/home/u/.data/bkt');
  });
  it('parses --local NAME=DIR', () => {
    expect(parseLocalDirs(['context=.', 'other=/abs'], '/w')).toEqual({ context: '/w', other: '/abs' });
    expect(() => parseLocalDirs(['context'], '/w')).toThrow(/expected NAME=DIR/);
  });
  it('formats sizes and ages', () => {
    expect(humanSize(0)).toBe('0B');
    expect(humanSize(4096)).toBe('4.1kB');
    expect(humanSize(12_345_678)).toBe('12.3MB');
    const now = Date.now();
    expect(humanAgo(new Date(now - 3 * 60_000), now)).toBe('3 minutes ago');
    expect(humanAgo(new Date(now - 1000), now)).toBe('1 second ago');
    expect(humanAgo(undefined, now)).toBe('');
  });
});
