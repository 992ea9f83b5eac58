import { describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { copy, image, local, marshal, mkdir, mkfile, rm, scratch, type State } from './index.js';
import { digestOf } from '@bkt/oci';

/** The last file op of a state's definition. */
function fileOp(st: State) {
  const def = marshal(st);
  const ops = def.def.map((b) => pb.Op.decode(b));
  const op = ops[ops.length - 2];
  if (op.op?.$case !== 'file') throw new Error('not a file op');
  return { inputs: op.inputs, actions: op.op.value.actions, def, caps: def.metadata[digestOf(def.def[def.def.length - 2])].caps };
}

describe('file actions', () => {
  it('chain with relative indexes as BuildKit marshals them', () => {
    const base = image('busybox');
    const { inputs, actions } = fileOp(base.file(mkdir('/a', 0o755).mkfile('/a/f', 0o644, 'hi').rm('/a/old', { allowNotFound: true })));
    expect(inputs).toHaveLength(1);
    expect(actions.map((a) => [a.input, a.secondaryInput, a.output])).toEqual([
      [0, -1, -1],
      [1, -1, -1], // inputs.length (1) + index of the previous action (0)
      [2, -1, 0], // the last action is the op's output 0
    ]);
    expect(actions[2].action).toEqual({ $case: 'rm', value: { path: '/a/old', allowNotFound: true, allowWildcard: false } });
  });

  it('on scratch, the first action has no input', () => {
    const { inputs, actions } = fileOp(scratch().file(mkdir('/x', 0o700).mkdir('/x/y', 0o700)));
    expect(inputs).toEqual([]);
    expect(actions.map((a) => [a.input, a.secondaryInput, a.output])).toEqual([
      [-1, -1, -1],
      [0, -1, 0],
    ]);
  });

  it('resolves relative paths against the working dir; dest keeps a trailing / or /.', () => {
    const ctx = local('context').dir('/src');
    const st = image('busybox').dir('/app');
    const { actions } = fileOp(
      st.file(
        mkdir('data', 0o755, { makeParents: true })
          .mkfile('./data/../f', 0o600, 'x')
          .copy(ctx, 'pkg/a.txt', 'out/')
          .copy(ctx, '/abs', 'dot/.')
          .copy(ctx, 'b', '/'),
      ),
    );
    const paths = actions.map((a) => {
      const v = a.action!.value as { path?: string; src?: string; dest?: string };
      return v.path ?? `${v.src} -> ${v.dest}`;
    });
    expect(paths).toEqual(['/app/data', '/app/f', '/src/pkg/a.txt -> /app/out/', '/abs -> /app/dot/.', '/src/b -> /']);
  });

  it('marshals every FileActionCopy option', () => {
    const ctx = local('context');
    // A small instant: @bkt/api's decoder cannot read int64 values beyond 2^53 (see the next test for real ones).
    const when = new Date(5);
    const { actions, caps } = fileOp(
      image('busybox').file(
        copy(ctx, '/src/*.txt', '/dst', {
          followSymlink: true,
          dirCopyContents: true,
          attemptUnpackDockerCompatibility: true,
          createDestPath: true,
          allowWildcard: true,
          allowEmptyWildcard: true,
          chown: 'app:staff',
          mode: 0o640,
          createdTime: when,
          includePatterns: ['*.txt'],
          excludePatterns: ['secret.txt'],
          alwaysReplaceExistingDestPaths: true,
        }),
      ),
    );
    expect(actions[0]).toMatchObject({ input: 0, secondaryInput: 1, output: 0 });
    expect(actions[0].action).toEqual({
      $case: 'copy',
      value: {
        src: '/src/*.txt',
        dest: '/dst',
        owner: { user: { user: { $case: 'byName', value: { name: 'app', input: 0 } } }, group: { user: { $case: 'byName', value: { name: 'staff', input: 0 } } } },
        mode: 0o640,
        followSymlink: true,
        dirCopyContents: true,
        attemptUnpackDockerCompatibility: true,
        createDestPath: true,
        allowWildcard: true,
        allowEmptyWildcard: true,
        timestamp: 5_000_000,
        includePatterns: ['*.txt'],
        excludePatterns: ['secret.txt'],
        alwaysReplaceExistingDestPaths: true,
        modeStr: '',
      },
    });
    expect(caps).toMatchObject({ 'file.base': true, 'file.copy.includeexcludepatterns': true, 'file.copy.alwaysreplaceexistingdestpaths': true });
  });

  it('defaults: mode -1, timestamp -1, no owner; a symbolic mode goes to modeStr', () => {
    const { actions, caps } = fileOp(scratch().file(copy(local('c'), 'a', 'b').copy(local('c'), 'x', 'y', { mode: 'u+x' })));
    expect(actions[0].action!.value).toMatchObject({ mode: -1, timestamp: -1, owner: undefined, modeStr: '' });
    expect(actions[1].action!.value).toMatchObject({ mode: -1, modeStr: 'u+x' });
    expect(caps).toHaveProperty(['file.copy.modestring']);
  });

  it('keeps nanosecond timestamps exactly (int64 beyond 2^53)', () => {
    const ns = 1_700_000_000_123_456_789n;
    const varint = (n: bigint) => {
      const out: number[] = [];
      for (let v = n; ; ) {
        if (v < 0x80n) return Buffer.from([...out, Number(v)]).toString('hex');
        out.push(Number(v & 0x7fn) | 0x80);
        v >>= 7n;
      }
    };
    const hex = (st: State) => Buffer.from(marshal(st).def[0]).toString('hex');
    // the timestamp field (5, varint: tag 0x28) holds every digit
    expect(hex(scratch().file(mkfile('/f', 0o644, 'x', { createdTime: ns })))).toContain(`28${varint(ns)}`);
    const when = new Date('2024-01-02T03:04:05.678Z');
    expect(hex(scratch().file(mkdir('/d', 0o755, { createdTime: when })))).toContain(`28${varint(BigInt(when.getTime()) * 1_000_000n)}`);
  });

  it('chown: ids, names, root, user only, object form', () => {
    const owner = (chown: Parameters<typeof mkdir>[2] extends infer O ? O extends { chown?: infer C } ? C : never : never) => {
      const { actions } = fileOp(image('busybox').file(mkdir('/d', 0o755, { chown })));
      return (actions[0].action!.value as pb.FileActionMkDir).owner;
    };
    expect(owner('1000:1001')).toEqual({ user: { user: { $case: 'byID', value: 1000 } }, group: { user: { $case: 'byID', value: 1001 } } });
    expect(owner('root')).toEqual({ user: { user: { $case: 'byID', value: 0 } }, group: undefined });
    expect(owner({ user: 'www', group: 33 })).toEqual({
      user: { user: { $case: 'byName', value: { name: 'www', input: 0 } } },
      group: { user: { $case: 'byID', value: 33 } },
    });
    // on scratch, names refer to no input (-1)
    const { actions } = fileOp(scratch().file(mkdir('/d', 0o755, { chown: 'nobody' })));
    expect((actions[0].action!.value as pb.FileActionMkDir).owner?.user).toEqual({ user: { $case: 'byName', value: { name: 'nobody', input: -1 } } });
  });

  it('masks mkdir/mkfile modes to permission bits and rejects bad modes', () => {
    const { actions } = fileOp(scratch().file(mkdir('/d', 0o4755)));
    expect((actions[0].action!.value as pb.FileActionMkDir).mode).toBe(0o755);
    expect(() => marshal(scratch().file(mkdir('/d', -1)))).toThrow(/invalid mode/);
  });

  it('copies from a file action chain on another state into the same op (relative secondary input)', () => {
    const staged = mkdir('/stage', 0o755).mkfile('/stage/f', 0o644, 'x').withState(image('alpine'));
    const { inputs, actions } = fileOp(image('busybox').file(copy(staged, '/stage', '/out')));
    // inputs: busybox (the copy's target) and alpine (the staged chain's state)
    expect(inputs).toHaveLength(2);
    expect(actions.map((a) => [a.input, a.secondaryInput, a.output, a.action!.$case])).toEqual([
      [1, -1, -1, 'mkdir'],
      [2, -1, -1, 'mkfile'], // 2 inputs + action 0
      [0, 3, 0, 'copy'], // secondary input: 2 inputs + action 1
    ]);
  });

  it('rm wildcards mark their cap', () => {
    const { caps, actions } = fileOp(image('busybox').file(rm('/tmp/*', { allowWildcard: true })));
    expect(actions[0].action!.value).toMatchObject({ path: '/tmp/*', allowWildcard: true });
    expect(caps).toHaveProperty(['file.rm.wildcard']);
  });
});

