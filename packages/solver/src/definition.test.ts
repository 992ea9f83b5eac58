import { describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { isBktError, type Digest } from '@bkt/core';
import { buildGraph, digestOf, loadDefinition, type RawOp } from './definition.js';
import { DefBuilder } from './graphs.test-util.js';

const d = (c: string) => `sha256:${c.repeat(64)}` as Digest;
const mkdir = (input: number): pb.FileAction =>
  pb.FileAction.fromPartial({ input, secondaryInput: -1, output: 0, action: { $case: 'mkdir', value: pb.FileActionMkDir.fromPartial({ path: '/x', mode: 0o755 }) } });
const fileOp = (inputs: Digest[]): pb.Op => pb.Op.fromPartial({ inputs: inputs.map((digest) => ({ digest, index: 0 })), op: { $case: 'file', value: { actions: [mkdir(inputs.length ? 0 : -1)] } } });
const ret = (digest: Digest): RawOp => ({ digest: d('f'), op: pb.Op.fromPartial({ inputs: [{ digest, index: 0 }] }) });

function rejection(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error');
}

describe('loadDefinition', () => {
  it('digests ops as given, links inputs, orders inputs first, names vertices', () => {
    const g = new DefBuilder();
    const src = g.source('local://context');
    const a = g.mkfile(null, { '/a': 'a' });
    const top = g.copy(a, src, '/x', '/y');
    const def = loadDefinition(g.build(top));
    expect(def.vertices.map((v) => v.digest)).toEqual([a, src, top]);
    expect(def.result?.vertex.digest).toBe(top);
    expect(def.vertices.map((v) => v.name)).toEqual(['mkfile /a', 'local://context', 'copy /x /y']);
    // The digest is of the bytes on the wire.
    const raw = pb.Definition.decode(g.build(top));
    expect(raw.def.map((b) => digestOf(b))).toContain(top);
  });

  it('finds a cycle and names an op in it', () => {
    const err = rejection(() => buildGraph([{ digest: d('a'), op: fileOp([d('b')]) }, { digest: d('b'), op: fileOp([d('a')]) }, ret(d('a'))]));
    expect(isBktError(err, 'INVALID_DEFINITION')).toBe(true);
    expect(err.message).toContain('cycle');
    expect(err.message).toMatch(/sha256:(a|b){64}/);
  });

  it('rejects a last op that is not a return op', () => {
    const err = rejection(() => buildGraph([{ digest: d('a'), op: fileOp([]) }]));
    expect(err.message).toContain('return op');
  });

  it('rejects out-of-range mount, merge and diff inputs', () => {
    const exec = pb.Op.fromPartial({
      op: { $case: 'exec', value: { meta: pb.Meta.fromPartial({ args: ['sh'] }), mounts: [pb.Mount.fromPartial({ input: 2, dest: '/', output: 0 })] } },
    });
    expect(rejection(() => buildGraph([{ digest: d('a'), op: exec }, ret(d('a'))])).message).toContain('mount #0 (/) uses input 2');
    const merge = pb.Op.fromPartial({ op: { $case: 'merge', value: { inputs: [{ input: 1 }] } } });
    expect(rejection(() => buildGraph([{ digest: d('b'), op: merge }, ret(d('b'))])).message).toContain('merge input #0 is 1');
    const diff = pb.Op.fromPartial({ op: { $case: 'diff', value: { lower: { input: 0 }, upper: { input: 5 } } } });
    expect(rejection(() => buildGraph([{ digest: d('c'), op: diff }, ret(d('c'))])).message).toContain('diff lower is input 0');
  });

  it('rejects a copy whose secondary input is a later action', () => {
    const op = pb.Op.fromPartial({
      op: {
        $case: 'file',
        value: {
          actions: [
            pb.FileAction.fromPartial({ input: -1, secondaryInput: 1, output: 0, action: { $case: 'copy', value: pb.FileActionCopy.fromPartial({ src: '/', dest: '/' }) } }),
            mkdir(-1),
          ],
        },
      },
    });
    expect(rejection(() => buildGraph([{ digest: d('a'), op }, ret(d('a'))])).message).toContain('secondary input 1');
  });
});
