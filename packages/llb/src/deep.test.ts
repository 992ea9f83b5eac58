import { describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { definitionHead, mkdir, scratch, type State } from './index.js';

/**
 * Graphs deeper than the JavaScript call stack: marshalling walks them
 * iteratively (a recursive walk overflows at about 1,500 ops).
 */
const DEPTH = 10_000;

describe('deep graphs', () => {
  it(`marshals a chain of ${DEPTH} file ops, each op after its input`, () => {
    let s: State = scratch();
    for (let i = 0; i < DEPTH; i++) s = s.file(mkdir(`/d${i}`, 0o755));
    const def = s.marshal({ platform: 'linux/amd64' });
    expect(def.def).toHaveLength(DEPTH + 1);
    const ops = def.def.slice(0, -1).map((b) => pb.Op.decode(b));
    expect(ops[0].inputs).toEqual([]);
    for (let i = 1; i < DEPTH; i++) expect(ops[i].inputs).toHaveLength(1);
    expect(definitionHead(def)).toBeDefined();
  });

  it(`marshals one file op of ${DEPTH} chained actions`, () => {
    let action = mkdir('/a0', 0o755);
    for (let i = 1; i < DEPTH; i++) action = action.mkdir(`/a${i}`, 0o755);
    const def = scratch().file(action).marshal({ platform: 'linux/amd64' });
    const op = pb.Op.decode(def.def[0]);
    expect(op.op?.$case === 'file' && op.op.value.actions.length).toBe(DEPTH);
  });

  it(`keeps ${DEPTH} metadata changes (env, dir, user) of a state chain`, () => {
    let s: State = scratch();
    for (let i = 0; i < DEPTH; i++) s = s.env(`E${i}`, String(i)).dir(`/w${i}`).user(`u${i}`);
    expect(s.envList()).toHaveLength(DEPTH);
    expect([s.getEnv('E0'), s.getEnv(`E${DEPTH - 1}`), s.getDir(), s.getUser()]).toEqual(['0', String(DEPTH - 1), `/w${DEPTH - 1}`, `u${DEPTH - 1}`]);
    const run = s.run({ args: ['true'] }).root().marshal({ platform: 'linux/amd64' });
    const exec = pb.Op.decode(run.def[0]);
    expect(exec.op?.$case === 'exec' && exec.op.value.meta?.env.length).toBe(DEPTH);
  });
});
