import { describe, expect, it } from 'vitest';
import type { UsageRecord } from '@bkt/core';
import { keepBytes, parseDuration, parseSize, policyPrune, resolveGCPolicies, type GCPolicy } from './gc.js';

const GiB = 2 ** 30;
const disk = { total: 100 * GiB, free: 50 * GiB };
const policy = (p: Partial<GCPolicy>): GCPolicy => ({ all: false, keepDurationMs: 0, reservedSpace: 0, maxUsedSpace: 0, minFreeSpace: 0, filters: [], ...p });

describe('GC sizes and durations', () => {
  it('parses sizes in binary units, percentages of the disk, numbers', () => {
    expect(parseSize('512MB', disk, 'x')).toBe(512 * 2 ** 20);
    expect(parseSize('10GiB', disk, 'x')).toBe(10 * GiB);
    expect(parseSize('1.5g', disk, 'x')).toBe(1.5 * GiB);
    expect(parseSize('10%', disk, 'x')).toBe(10 * GiB);
    expect(parseSize(1234, disk, 'x')).toBe(1234);
    expect(() => parseSize('lots', disk, 'gcPolicy[0].maxUsedSpace')).toThrow(/gcPolicy\[0\]\.maxUsedSpace: "lots" is not a size/);
  });

  it('parses Go durations and seconds', () => {
    expect(parseDuration('48h', 'x')).toBe(48 * 3600_000);
    expect(parseDuration('1h30m', 'x')).toBe(90 * 60_000);
    expect(parseDuration(90, 'x')).toBe(90_000);
    expect(() => parseDuration('2 days', 'gcInterval')).toThrow(/gcInterval: "2 days" is not a duration/);
  });

  it('resolves configured policies, naming a bad filter', () => {
    expect(resolveGCPolicies([{ all: true, keepDuration: '1h', maxUsedSpace: '1GiB', filters: ['type==regular'] }], disk)).toEqual([
      { all: true, keepDurationMs: 3600_000, reservedSpace: 0, maxUsedSpace: GiB, minFreeSpace: 0, filters: ['type==regular'] },
    ]);
    expect(() => resolveGCPolicies([{ filters: ['==x'] }], disk)).toThrow(/gcPolicy\[0\]\.filters "==x"/);
  });
});

describe('GC limits (BuildKit calculateKeepBytes)', () => {
  it('max used, lowered by missing free space, never below reserved', () => {
    expect(keepBytes(policy({ maxUsedSpace: 10 * GiB }), 20 * GiB, disk)).toBe(10 * GiB);
    // 60 GiB free wanted, 50 free: 10 missing, so 20 - 10 = 10 GiB may stay.
    expect(keepBytes(policy({ minFreeSpace: 60 * GiB }), 20 * GiB, disk)).toBe(10 * GiB);
    expect(keepBytes(policy({ maxUsedSpace: 5 * GiB, minFreeSpace: 60 * GiB }), 20 * GiB, disk)).toBe(5 * GiB);
    expect(keepBytes(policy({ minFreeSpace: 60 * GiB, reservedSpace: 15 * GiB }), 20 * GiB, disk)).toBe(15 * GiB);
    expect(keepBytes(policy({ reservedSpace: 3 * GiB }), 20 * GiB, disk)).toBe(3 * GiB);
    // Enough free space: no limit is exceeded.
    expect(keepBytes(policy({ minFreeSpace: 10 * GiB }), 20 * GiB, disk)).toBe(Infinity);
  });

  it('a policy within its limits asks for no prune; one over them prunes to its limit; one without limits prunes what it selects', () => {
    expect(policyPrune(policy({ maxUsedSpace: 30 * GiB }), 20 * GiB, disk)).toBeUndefined();
    expect(policyPrune(policy({ maxUsedSpace: 10 * GiB, keepDurationMs: 1000 }), 20 * GiB, disk)).toEqual({ all: false, keepDuration: 1000, keepStorage: 10 * GiB });
    const p = policyPrune(policy({ all: true, filters: ['type==exec.cachemount'] }), 20 * GiB, disk)!;
    expect(p.all).toBe(true);
    expect(p.keepStorage).toBeUndefined();
    const r = { recordType: 'exec.cachemount', id: 'x', parents: [], description: '', inUse: false, mutable: false, shared: false } as unknown as UsageRecord;
    expect(p.filter!(r)).toBe(true);
    expect(p.filter!({ ...r, recordType: 'regular' })).toBe(false);
  });
});
