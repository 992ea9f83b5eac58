import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { BktError, Pacer, isBktError } from '@bkt/core';
import { MAX_DEFINITION_BYTES, copy, definitionHead, diff, encodeReturnOp, image, local, marshal, marshalBytes, marshalPaced, merge, mkdir, mkfile, scratch, SourceMap } from './index.js';
import { digestOf } from '@bkt/oci';

const decode = (b: Uint8Array) => pb.Op.decode(b);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** A program with every op kind, built from scratch each call. */
function program() {
  const ctx = local('context', { exclude: ['node_modules'] });
  const base = image('busybox:1.36');
  const built = base.run({ args: ['sh', '-c', 'echo hi > /hi'], mounts: [{ target: '/src', source: ctx, readonly: true }] }).root();
  return merge([base, diff(base, built)]).file(mkdir('/out', 0o755).copy(ctx, 'a.txt', '/out/'), { customName: 'assemble' });
}

describe('marshal', () => {
  it('is deterministic: the same program gives the same bytes', () => {
    const a = marshalBytes(program(), { platform: 'linux/amd64' });
    const b = marshalBytes(program(), { platform: 'linux/amd64' });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const st = program();
    expect(Buffer.from(st.marshalBytes({ platform: 'linux/amd64' })).equals(Buffer.from(a))).toBe(true);
  });

  it('keys metadata by op digest = sha256 of the op bytes', () => {
    const def = marshal(program());
    const digests = def.def.map((b) => `sha256:${createHash('sha256').update(b).digest('hex')}`);
    expect(Object.keys(def.metadata).sort()).toEqual([...digests].sort());
    expect(Object.keys(def.metadata)).toEqual([...digests].sort()); // inserted sorted
    expect(new Set(digests).size).toBe(digests.length);
  });

  it('orders ops dependencies first and ends with the return op', () => {
    const def = marshal(program());
    const seen = new Set<string>();
    const ops = def.def.map(decode);
    def.def.slice(0, -1).forEach((b, i) => {
      for (const input of ops[i].inputs) expect(seen.has(input.digest), `op ${i} input ${input.digest}`).toBe(true);
      seen.add(digestOf(b));
    });
    const ret = ops[ops.length - 1];
    expect(ret.op).toBeUndefined();
    expect(ret.platform).toBeUndefined();
    expect(ret.constraints).toBeUndefined();
    expect(ret.inputs).toEqual([{ digest: digestOf(def.def[def.def.length - 2]), index: 0 }]);
    expect(definitionHead(def)).toBe(ret.inputs[0].digest);
    // Go's order: image, local (inputs of the exec, in mount order), exec, diff, merge, file.
    expect(ops.slice(0, -1).map((o) => o.op?.$case)).toEqual(['source', 'source', 'exec', 'diff', 'merge', 'file']);
  });

  it('marshals a shared op once (diamond)', () => {
    const base = image('alpine');
    const a = base.file(mkfile('/a', 0o644, 'a'));
    const b = base.file(mkfile('/b', 0o644, 'b'));
    const def = marshal(merge([a, b]));
    const sources = def.def.map(decode).filter((o) => o.op?.$case === 'source');
    expect(sources).toHaveLength(1);
    expect(def.def).toHaveLength(5); // image, a, b, merge, return
  });

  it('marks the return op with the constraints/platform caps and the meta caps in use', () => {
    const plain = marshal(scratch().file(mkdir('/a', 0o755)));
    const retDigest = digestOf(plain.def[plain.def.length - 1]);
    expect(plain.metadata[retDigest].caps).toEqual({ constraints: true, platform: true });
    const withMeta = marshal(scratch().file(mkdir('/a', 0o755), { ignoreCache: true, customName: 'mk /a', exportCache: true }));
    const ret2 = digestOf(withMeta.def[withMeta.def.length - 1]);
    expect(withMeta.metadata[ret2].caps).toEqual({
      constraints: true, platform: true, 'meta.ignorecache': true, 'meta.description': true, 'meta.exportcache': true,
    });
    const fileDigest = digestOf(withMeta.def[0]);
    expect(withMeta.metadata[fileDigest]).toMatchObject({
      ignoreCache: true,
      description: { 'llb.customname': 'mk /a' },
      exportCache: { Value: true },
      caps: { 'file.base': true },
    });
  });

  it('records progress groups, descriptions and marshal-wide ignoreCache per op', () => {
    const st = image('busybox', { progressGroup: { id: 'g1', name: 'pulls' }, description: { 'com.example': 'x' } });
    const def = marshal(st, { ignoreCache: true });
    const md = def.metadata[digestOf(def.def[0])];
    expect(md.progressGroup).toEqual({ id: 'g1', name: 'pulls', weak: false });
    expect(md.description).toEqual({ 'com.example': 'x' });
    expect(md.ignoreCache).toBe(true);
  });

  it('gives an empty definition for scratch', () => {
    expect(marshal(scratch())).toEqual({ def: [], metadata: {}, Source: undefined });
    expect(merge([scratch(), scratch()]).output).toBeNull();
  });

  it('uses the marshal platform for ops without their own, only on platform-specific ops', () => {
    const st = image('busybox').run({ args: ['true'] }).root().file(mkdir('/x', 0o755));
    const ops = marshal(st, { platform: 'linux/arm/v7' }).def.map(decode);
    const arm = { OS: 'linux', Architecture: 'arm', Variant: 'v7', OSVersion: '', OSFeatures: [] };
    expect(ops[0].platform).toEqual(arm); // image
    expect(ops[1].platform).toEqual(arm); // exec
    expect(ops[2].platform).toBeUndefined(); // file
    const own = image('busybox', { platform: 'linux/arm64' });
    expect(decode(marshal(own, { platform: 'linux/amd64' }).def[0]).platform?.Architecture).toBe('arm64');
    expect(own.getPlatform()).toEqual({ os: 'linux', architecture: 'arm64' });
    // the state's platform flows into exec ops built on it
    const exec = decode(marshal(own.run({ args: ['true'] }).root(), { platform: 'linux/amd64' }).def[1]);
    expect(exec.platform?.Architecture).toBe('arm64');
  });

  it('collects source locations into Definition.Source', () => {
    const sm = new SourceMap('Dockerfile', 'Dockerfile', new TextEncoder().encode('FROM busybox\nRUN true\n'));
    const r1 = { start: { line: 1, character: 0 }, end: { line: 1, character: 12 } };
    const r2 = { start: { line: 2, character: 0 }, end: { line: 2, character: 8 } };
    const base = image('busybox', { sourceLocations: [sm.location([r1])] });
    const st = base.run({ args: ['true'], sourceLocations: [sm.location([r2])] }).root();
    const def = marshal(st);
    expect(def.Source?.infos).toHaveLength(1);
    expect(def.Source?.infos[0].filename).toBe('Dockerfile');
    expect(def.Source?.infos[0].language).toBe('Dockerfile');
    expect(Buffer.from(def.Source!.infos[0].data).toString()).toBe('FROM busybox\nRUN true\n');
    const imgDigest = digestOf(def.def[0]);
    const execDigest = digestOf(def.def[1]);
    expect(def.Source?.locations[imgDigest]).toEqual({ locations: [{ sourceIndex: 0, ranges: [r1] }] });
    expect(def.Source?.locations[execDigest]).toEqual({ locations: [{ sourceIndex: 0, ranges: [r2] }] });
    // source locations are not part of the op bytes
    expect(digestOf(marshal(image('busybox')).def[0])).toBe(imgDigest);
  });

  it('golden: llb.Scratch().File(llb.Mkdir("/a", 0755)) — bytes derived by hand from ops.proto', () => {
    // Op{ file(4): FileOp{ actions(2): FileAction{ input(1): -1, secondaryInput(2): -1,
    //   mkdir(6): { path(1): "/a", mode(2): 0755, timestamp(5): -1 } } }, constraints(11): {} }
    // Go's MarshalConstraints always sets an empty WorkerConstraints; a file op drops the platform.
    const minus1 = 'ffffffffffffffffff01';
    const mkdirMsg = `0a022f61` + `10ed03` + `28${minus1}`; // 18 bytes
    const action = `08${minus1}` + `10${minus1}` + `3212${mkdirMsg}`; // 42 bytes
    const expected = `222c` + `122a${action}` + `5a00`;
    const def = marshal(scratch().file(mkdir('/a', 0o755)));
    expect(Buffer.from(def.def[0]).toString('hex')).toBe(expected);
    expect(digestOf(def.def[0])).toBe(`sha256:${createHash('sha256').update(Buffer.from(expected, 'hex')).digest('hex')}`);
    expect(digestOf(def.def[0])).toBe('sha256:e9a242953722fb36f79402d14e62ff5f6a333f90ac874fe968f98784985d25a0');
  });

  it('golden: BuildKit\'s solver/llbsolver/testdata/gogoproto.data re-encodes byte for byte', () => {
    // A Definition written by BuildKit (Go, gogoproto): busybox source + return op.
    const hex =
      '0a331a310a2f646f636b65722d696d6167653a2f2f646f636b65722e696f2f6c6962726172792f62757379626f783a6c61746573740a4b0a490a477368613235363a3734656362356437393063333361323133626130306638663433643632393437646631643464656137326635656331333335336139623934336634363966306612' +
      '4b0a477368613235363a373465636235643739306333336132313362613030663866343364363239343764663164346465613732663565633133333533613962393433663436396630661200124b0a477368613235363a666464393930393331303031616539326631393731363733666632313230346566366135636363386331613464643133336438663066396266663637613363321200';
    const def = pb.Definition.decode(Buffer.from(hex, 'hex'));
    const [src, ret] = def.def;
    expect(digestOf(src)).toBe('sha256:74ecb5d790c33a213ba00f8f43d62947df1d4dea72f5ec13353a9b943f469f0f');
    expect(Buffer.from(pb.Op.encode(pb.Op.decode(src)).finish()).equals(Buffer.from(src))).toBe(true);
    // our return op for that input is BuildKit's, byte for byte
    const ours = encodeReturnOp({ digest: digestOf(src), index: 0 });
    expect(Buffer.from(ours).equals(Buffer.from(ret))).toBe(true);
    expect(digestOf(ours)).toBe('sha256:fdd990931001ae92f1971673ff21204ef6a5ccc8c1a4dd133d8f0f9bff67a3c2');
  });

  it('decodes with protoc (an independent codec)', () => {
    const protoc = path.join(repo, 'node_modules/protoc/bin', process.arch === 'arm64' ? 'protoc-linux-aarch_64' : 'protoc-linux-x86_64');
    const text = execFileSync(protoc, ['-I', path.join(repo, 'proto'), '--decode=pb.Definition', 'github.com/moby/buildkit/solver/pb/ops.proto'], {
      input: Buffer.from(marshalBytes(program())),
    }).toString();
    expect(text).toContain('def: ');
    expect(text).toContain('llb.customname');
    for (const b of marshal(program()).def) {
      const opText = execFileSync(protoc, ['-I', path.join(repo, 'proto'), '--decode=pb.Op', 'github.com/moby/buildkit/solver/pb/ops.proto'], { input: Buffer.from(b) }).toString();
      expect(opText.length).toBeGreaterThan(0);
    }
  });

  it('copy from one state into another marshals both as inputs', () => {
    const src = local('context');
    const dst = image('busybox');
    const def = marshal(dst.file(copy(src, '/x', '/y')));
    const file = decode(def.def[2]);
    expect(file.inputs.map((i) => i.digest)).toEqual([digestOf(def.def[0]), digestOf(def.def[1])]);
  });
});

describe('marshal bounds and pacing', () => {
  /** An image, then `count` RUNs each carrying a `valueBytes` environment variable (a definition of about count × valueBytes). */
  function heavy(count: number, valueBytes: number) {
    const sm = new SourceMap('Dockerfile', 'Dockerfile');
    let st = image('busybox:1.36').env('BIG', 'x'.repeat(valueBytes));
    for (let i = 0; i < count; i++) {
      st = st.run({ args: ['echo', String(i)], customName: `RUN echo ${i}`, sourceLocations: [sm.location([{ start: { line: i + 3, character: 0 }, end: { line: i + 3, character: 0 } }])] }).root();
    }
    return st;
  }

  it('refuses a definition past maxBytes, naming the op that passed it and its line', () => {
    let err: unknown;
    try {
      marshal(heavy(20, 100_000), { platform: 'linux/amd64', maxBytes: 1_000_000 });
    } catch (e) {
      err = e;
    }
    expect(isBktError(err) && err.code).toBe('INVALID_DEFINITION');
    const e = err as BktError;
    expect(e.message).toMatch(/^the definition is larger than .* MiB \(1000000 bytes\), the limit of a marshalled definition, at op sha256:[0-9a-f]{64} \(RUN echo 9\)$/);
    expect(e.details).toMatchObject({ file: 'Dockerfile', line: 12 });
    expect(marshal(heavy(5, 100_000), { platform: 'linux/amd64', maxBytes: 1_000_000 }).def).toHaveLength(7);
    expect(MAX_DEFINITION_BYTES).toBe(512 * 1024 * 1024);
  });

  it('marshalPaced gives the same definition, and stops soon after its signal aborts', async () => {
    const st = heavy(50, 10);
    const same = await marshalPaced(st, { platform: 'linux/amd64' }, new Pacer());
    expect(pb.Definition.encode(same).finish()).toEqual(pb.Definition.encode(marshal(st, { platform: 'linux/amd64' })).finish());

    const big = heavy(3_000, 20_000);
    const controller = new AbortController();
    const reason = new Error('stopped by the test');
    const started = performance.now();
    const marshalling = marshalPaced(big, { platform: 'linux/amd64' }, new Pacer(controller.signal));
    setTimeout(() => controller.abort(reason), 50);
    await expect(marshalling).rejects.toBe(reason);
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});
