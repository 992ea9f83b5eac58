import { describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { diff, image, marshal, merge, mkfile, scratch } from './index.js';
import { digestOf } from '@bkt/oci';

describe('merge and diff', () => {
  const a = image('busybox');
  const b = scratch().file(mkfile('/b', 0o644, 'b'));
  const c = scratch().file(mkfile('/c', 0o644, 'c'));

  it('merge lists its inputs in order, without platform', () => {
    const def = marshal(merge([a, b, c], { customName: 'merge!' }));
    const op = pb.Op.decode(def.def[3]);
    expect(op.op).toEqual({ $case: 'merge', value: { inputs: [{ input: 0 }, { input: 1 }, { input: 2 }] } });
    expect(op.inputs.map((i) => i.digest)).toEqual(def.def.slice(0, 3).map(digestOf));
    expect(op.platform).toBeUndefined();
    expect(def.metadata[digestOf(def.def[3])]).toMatchObject({ caps: { mergeop: true }, description: { 'llb.customname': 'merge!' } });
  });

  it('merge drops scratch inputs and returns a single input as is', () => {
    expect(merge([scratch(), b, scratch()])).toBe(b);
    expect(merge([]).output).toBeNull();
    const op = pb.Op.decode(marshal(merge([scratch(), b, c])).def.at(-2)!);
    expect(op.op?.$case === 'merge' && op.op.value.inputs).toHaveLength(2);
  });

  it('diff has lower and upper inputs; scratch lower gives upper, scratch upper is -1', () => {
    const upper = a.file(mkfile('/x', 0o644, 'x'));
    const def = marshal(diff(a, upper));
    const op = pb.Op.decode(def.def.at(-2)!);
    expect(op.op).toEqual({ $case: 'diff', value: { lower: { input: 0 }, upper: { input: 1 } } });
    expect(def.metadata[digestOf(def.def.at(-2)!)].caps).toEqual({ diffop: true });
    expect(diff(scratch(), upper)).toBe(upper);
    expect(diff(scratch(), scratch()).output).toBeNull();
    const toEmpty = pb.Op.decode(marshal(diff(a, scratch())).def.at(-2)!);
    expect(toEmpty.op).toEqual({ $case: 'diff', value: { lower: { input: 0 }, upper: { input: -1 } } });
  });

  it('merge(A, diff(A, B)) references A once', () => {
    const B = a.file(mkfile('/new', 0o644, 'n'));
    const def = marshal(merge([a, diff(a, B)]));
    const sources = def.def.map((x) => pb.Op.decode(x)).filter((o) => o.op?.$case === 'source');
    expect(sources).toHaveLength(1);
  });

  it('keeps the first input\'s state values', () => {
    expect(merge([a.dir('/app').env('K', 'v'), b]).getDir()).toBe('/app');
    expect(diff(a.env('K', 'v'), b).getEnv('K')).toBe('v');
  });
});
