import { describe, expect, it } from 'vitest';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { pb } from './index.js';

describe('int64 fields', () => {
  it('decode nanosecond timestamps beyond 2^53 instead of throwing', () => {
    // FileActionMkDir { path = 1: "/a", timestamp = 5: 1700000000 s in ns }
    const ns = 1_700_000_000n * 1_000_000_000n;
    const bytes = new BinaryWriter().uint32(10).string('/a').uint32(40).int64(ns).finish();
    const mkdir = pb.FileActionMkDir.decode(bytes);
    expect(mkdir.path).toBe('/a');
    expect(BigInt(mkdir.timestamp)).toBe(ns); // whole seconds are exact as doubles
  });
});
