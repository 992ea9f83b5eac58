import { describe, expect, it } from 'vitest';
import type { UsageRecord } from '@bkt/core';
import { parseFilters, usageAdaptor } from './filters.js';

const record = (over: Partial<UsageRecord>): UsageRecord => ({
  id: 'abc',
  mutable: false,
  inUse: false,
  size: 1,
  createdAt: new Date(0),
  usageCount: 0,
  description: 'mount / from exec /bin/sh -c echo',
  recordType: 'regular',
  shared: false,
  parents: [],
  ...over,
});

const selects = (filters: string[], r: UsageRecord) => parseFilters(filters, 'filter')(usageAdaptor(r));

describe('containerd filters over usage records', () => {
  it('==, !=, ~= and bare fields; terms of one filter all hold, any filter may match', () => {
    const r = record({ recordType: 'exec.cachemount', inUse: true });
    expect(selects([], r)).toBe(true);
    expect(selects(['type==exec.cachemount'], r)).toBe(true);
    expect(selects(['type==regular'], r)).toBe(false);
    expect(selects(['type!=regular'], r)).toBe(true);
    expect(selects(['description~=exec /bin/sh'], r)).toBe(true);
    expect(selects(['inuse'], r)).toBe(true);
    expect(selects(['mutable'], r)).toBe(false);
    expect(selects(['inuse,type==regular'], r)).toBe(false);
    expect(selects(['type==regular', 'inuse'], r)).toBe(true);
    expect(selects(['description=="mount / from exec /bin/sh -c echo"'], r)).toBe(true);
    expect(selects(['id==abc , private'], r)).toBe(true);
  });

  it('a malformed filter is an error naming it', () => {
    expect(() => parseFilters(['==x'], 'DiskUsageRequest.filter')).toThrow(/DiskUsageRequest\.filter "==x": expected a field name/);
    expect(() => parseFilters(['type~=('], 'f')).toThrow(/f "type~=\(": invalid regular expression/);
    expect(() => parseFilters(['type=="open'], 'f')).toThrow(/unterminated quoted value/);
    expect(() => parseFilters(['a b'], 'f')).toThrow(/expected "," or the end after field "a"/);
  });
});
