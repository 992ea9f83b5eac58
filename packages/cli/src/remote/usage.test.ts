import { describe, expect, it } from 'vitest';
import { control } from '@bkt/api';
import { containerdFilter, usageRecordOf } from './usage.js';

describe('containerdFilter: buildx --filter as the one containerd filter BuildKit reads', () => {
  it('joins the terms, = as ==, and leaves until= to keepDuration', () => {
    expect(containerdFilter(['type=regular', 'id!=abc', 'description~=^pulled', 'until=24h'])).toBe('type==regular,id!=abc,description~="^pulled"');
    expect(containerdFilter([])).toBeUndefined();
    expect(containerdFilter(['until=1h'])).toBeUndefined();
  });

  it('quotes values holding commas, quotes, spaces or backslashes', () => {
    expect(containerdFilter(['description=a,b "c"\\d'])).toBe('description=="a,b \\"c\\"\\\\d"');
  });

  it('tests yes/no keys by presence: false as the opposite key, inuse=false as no term (prune keeps what is in use)', () => {
    expect(containerdFilter(['mutable=true', 'shared=false'])).toBe('mutable,private');
    expect(containerdFilter(['private!=true', 'mutable!=false'])).toBe('shared,mutable');
    expect(containerdFilter(['inuse=false'])).toBeUndefined();
    expect(() => containerdFilter(['mutable=yes'])).toThrow('--filter "mutable=yes": mutable is true or false');
  });
});

describe('usageRecordOf', () => {
  it('reads a DiskUsage record back as the store reports it', () => {
    const m = control.UsageRecord.fromPartial({
      ID: 'abc',
      Mutable: true,
      InUse: false,
      Size: 4096,
      Parent: 'p1',
      Parents: ['p1', 'p2'],
      CreatedAt: { seconds: 1700000000, nanos: 5_000_000 },
      UsageCount: 3,
      Description: 'pulled from x',
      RecordType: 'regular',
      Shared: true,
    });
    expect(usageRecordOf(m)).toEqual({
      id: 'abc',
      mutable: true,
      inUse: false,
      size: 4096,
      parents: ['p1', 'p2'],
      createdAt: new Date(1700000000005),
      usageCount: 3,
      description: 'pulled from x',
      recordType: 'regular',
      shared: true,
    });
    expect(usageRecordOf(control.UsageRecord.fromPartial({ ID: 'x', Parent: 'only' })).parents).toEqual(['only']);
  });
});
