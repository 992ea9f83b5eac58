/** The bridge's file access to results: ReadFile, ReadDir, StatFile confined to the result's root; forwarding to another frontend. */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBktError, type BktPlugin, type FrontendBridge } from '@bkt/core';
import { DefBuilder, solverPerTest, testPlugin, treeOf } from './graphs.test-util.js';

describe('frontend bridge: files of results', () => {
  const t = solverPerTest('bkt-bridge-files-');
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bkt-bridge-ctx-'));
    await writeFile(join(dir, 'hello.txt'), 'hello, bridge\n');
    await writeFile(join(dir, 'b.json'), '{}');
    await mkdir(join(dir, 'sub'));
    await writeFile(join(dir, 'sub', 'inner'), 'inner');
    await symlink('/etc/passwd', join(dir, 'escape'));
    await symlink('../../../../hello.txt', join(dir, 'sub', 'up'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A frontend running `body` with the bridge, its result whatever body returns. */
  const probe = (body: (bridge: FrontendBridge) => Promise<void>): BktPlugin => ({
    name: 'probe',
    frontends: [
      {
        name: 'probe.v0',
        async solve(_attrs, bridge) {
          await body(bridge);
          return { ref: null, metadata: {} };
        },
      },
    ],
  });
  const ctxDef = () => {
    const g = new DefBuilder();
    return g.build(g.source('test://ctx'));
  };

  it('reads files, ranges, directories and stats of a solved result; symlinks stay inside its root', async () => {
    const seen: Record<string, unknown> = {};
    const s = await t.open([
      testPlugin(),
      probe(async (bridge) => {
        const { ref } = await bridge.solve(ctxDef());
        seen.file = Buffer.from(await bridge.readFile(ref, '/hello.txt')).toString();
        seen.range = Buffer.from(await bridge.readFile(ref, 'hello.txt', { offset: 7, length: 6 })).toString();
        seen.tail = Buffer.from(await bridge.readFile(ref, 'hello.txt', { offset: 7 })).toString();
        // A symlink climbing out of the root resolves inside it.
        seen.up = Buffer.from(await bridge.readFile(ref, 'sub/up')).toString();
        seen.dotdot = Buffer.from(await bridge.readFile(ref, '../../../hello.txt')).toString();
        seen.escape = await bridge.readFile(ref, 'escape').catch((e: unknown) => e);
        seen.dir = (await bridge.readDir(ref, '/')).map((e) => e.path);
        seen.json = (await bridge.readDir(ref, '.', '*.json')).map((e) => e.path);
        const st = await bridge.statFile(ref, 'sub');
        seen.isDir = (st.mode & 0o170000) === 0o040000;
        seen.size = (await bridge.statFile(ref, 'hello.txt')).size;
        seen.missing = await bridge.statFile(ref, 'nope').catch((e: unknown) => e);
        seen.notFile = await bridge.readFile(ref, 'sub').catch((e: unknown) => e);
        seen.scratch = await bridge.readFile(null, 'x').catch((e: unknown) => e);
      }),
    ]);
    await s.solve({ frontend: 'probe.v0', localDirs: { ctx: dir } });
    expect(seen.file).toBe('hello, bridge\n');
    expect(seen.range).toBe('bridge');
    expect(seen.tail).toBe('bridge\n');
    expect(seen.up).toBe('hello, bridge\n');
    expect(seen.dotdot).toBe('hello, bridge\n');
    // /etc/passwd of the host is never read: the link resolves to <root>/etc/passwd, which does not exist.
    expect(isBktError(seen.escape, 'NOT_FOUND')).toBe(true);
    expect((seen.escape as Error).message).toContain('escape');
    expect(seen.dir).toEqual(['b.json', 'escape', 'hello.txt', 'sub']);
    expect(seen.json).toEqual(['b.json']);
    expect(seen.isDir).toBe(true);
    expect(seen.size).toBe(14);
    expect(isBktError(seen.missing, 'NOT_FOUND')).toBe(true);
    expect(isBktError(seen.notFile, 'INVALID_ARGUMENT')).toBe(true);
    expect(isBktError(seen.scratch, 'NOT_FOUND')).toBe(true);
  });

  it('solveFrontend runs another registered frontend in the same build, with its attrs and inputs, and returns its metadata', async () => {
    const inner: BktPlugin = {
      name: 'inner',
      frontends: [
        {
          name: 'inner.v0',
          async solve(attrs, bridge) {
            const r = await bridge.solve(bridge.inputs!.context!);
            return { ref: r.ref, metadata: { 'containerimage.config': new TextEncoder().encode(attrs.config ?? '') } };
          },
        },
      ],
    };
    let got: Awaited<ReturnType<FrontendBridge['solveFrontend']>> | undefined;
    const s = await t.open([
      testPlugin(),
      inner,
      probe(async (bridge) => {
        const g = new DefBuilder();
        got = await bridge.solveFrontend('inner.v0', { config: '{"a":1}' }, { context: g.build(g.mkfile(null, { '/f': 'forwarded' })) });
      }),
    ]);
    await s.solve({ frontend: 'probe.v0' });
    expect(await treeOf(got!.ref)).toEqual({ f: 'forwarded' });
    expect(Buffer.from(got!.metadata['containerimage.config']).toString()).toBe('{"a":1}');
  });

  it('solveFrontend of an unknown frontend fails naming it', async () => {
    const s = await t.open([testPlugin(), probe(async (bridge) => void (await bridge.solveFrontend('nope.v0', {})))]);
    const err = await s.solve({ frontend: 'probe.v0' }).catch((e: unknown) => e);
    expect((err as Error).message).toContain('nope.v0');
  });
});

describe('frontend bridge: a frontend forwarding to its own name', () => {
  const t = solverPerTest('bkt-bridge-nested-');

  it('each run is a step of its own', async () => {
    const nested: BktPlugin = {
      name: 'nested',
      frontends: [
        {
          name: 'nest.v0',
          async solve(attrs, bridge, ctx) {
            ctx.progress.log(1, `depth ${attrs.depth ?? '0'}\n`);
            if (attrs.depth !== '2') await bridge.solveFrontend('nest.v0', { depth: String(Number(attrs.depth ?? '0') + 1) });
            return { ref: null, metadata: {} };
          },
        },
      ],
    };
    const s = await t.open([testPlugin(), nested]);
    const started = new Map<string, number>();
    await s.solve({
      frontend: 'nest.v0',
      onProgress: (e) => {
        if (e.type === 'vertex' && e.vertex.name === '[frontend] nest.v0' && !e.vertex.completed) started.set(e.vertex.digest, (started.get(e.vertex.digest) ?? 0) + 1);
      },
    });
    expect([...started.values()]).toEqual([1, 1, 1]);
  });
});
