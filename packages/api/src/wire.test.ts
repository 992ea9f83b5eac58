/**
 * Wire compatibility of the generated `pb` codecs with protoc's own encoder
 * and decoder: the bytes of an op are what its digest is computed from, so
 * they must be exactly what BuildKit would write.
 */
import { createHash } from 'node:crypto';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { protoFiles } from '../scripts/generate.mjs';
import { pb } from './index.js';
import { sortedMapEntries } from './map-order.js';
import { protocDecode, protocDescriptorSet, protocEncode } from './protoc.test-util.js';

const digestOf = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const encodeOp = (op: pb.Op) => Buffer.from(pb.Op.encode(op).finish());

describe('pb.Definition built with the generated encoders', () => {
  const source = pb.Op.fromPartial({
    op: {
      $case: 'source',
      value: {
        identifier: 'docker-image://docker.io/library/alpine:3.20',
        attrs: { 'image.resolvemode': 'default', 'image.recordtype': 'internal' },
      },
    },
    platform: { Architecture: 'amd64', OS: 'linux' },
  });
  const sourceBytes = encodeOp(source);

  const file = pb.Op.fromPartial({
    inputs: [{ digest: digestOf(sourceBytes), index: 0 }],
    op: {
      $case: 'file',
      value: {
        actions: [
          {
            input: 0,
            secondaryInput: -1,
            output: -1,
            action: {
              $case: 'mkdir',
              value: pb.FileActionMkDir.fromPartial({ path: '/app', mode: 0o755, makeParents: true, owner: { user: { user: { $case: 'byID', value: 0 } } } }),
            },
          },
          {
            input: 1,
            secondaryInput: 0,
            output: 0,
            action: {
              $case: 'copy',
              value: pb.FileActionCopy.fromPartial({ src: '/etc/hosts', dest: '/app/hosts', mode: -1, createDestPath: true, allowWildcard: true, timestamp: -1 }),
            },
          },
        ],
      },
    },
  });
  const fileBytes = encodeOp(file);

  const exec = pb.Op.fromPartial({
    inputs: [{ digest: digestOf(fileBytes), index: 0 }],
    op: {
      $case: 'exec',
      value: {
        meta: { args: ['/bin/sh', '-c', 'echo hi'], env: ['PATH=/usr/bin:/bin'], cwd: '/app', user: 'nobody' },
        mounts: [
          { input: 0, dest: '/', output: 0 },
          { input: -1, dest: '/root/.cache', output: -1, mountType: pb.MountType.CACHE, cacheOpt: { ID: 'go-build', sharing: pb.CacheSharingOpt.LOCKED } },
          { input: -1, dest: '/run/secrets/token', output: -1, mountType: pb.MountType.SECRET, secretOpt: { ID: 'token', mode: 0o400 } },
          { input: -1, dest: '/tmp', output: -1, mountType: pb.MountType.TMPFS, TmpfsOpt: { size: 64 << 20 } },
        ],
        network: pb.NetMode.NONE,
      },
    },
  });
  const execBytes = encodeOp(exec);

  const definition = pb.Definition.fromPartial({
    def: [sourceBytes, fileBytes, execBytes],
    metadata: {
      [digestOf(execBytes)]: {
        ignoreCache: true,
        description: { 'llb.customname': 'RUN echo hi' },
        caps: { 'exec.mount.cache': true, 'exec.mount.secret': true },
      },
      [digestOf(sourceBytes)]: { description: { 'llb.customname': 'FROM alpine' } },
    },
  });
  const definitionBytes = pb.Definition.encode(definition).finish();

  it('decodes with protoc as pb.Definition: def entries and the metadata map', () => {
    const text = protocDecode('pb.Definition', definitionBytes);
    expect(text.match(/^def: /gm)).toHaveLength(3);
    expect(text.match(/^metadata \{/gm)).toHaveLength(2);
    expect(text).toContain(`key: "${digestOf(execBytes)}"`);
    expect(text).toContain(`key: "${digestOf(sourceBytes)}"`);
    expect(text).toMatch(/ignore_cache: true/);
    expect(text).toMatch(/description \{\s+key: "llb.customname"\s+value: "RUN echo hi"\s+\}/);
    expect(text).toMatch(/caps \{\s+key: "exec.mount.cache"\s+value: true\s+\}/);
  });

  it('decodes each def entry with protoc as pb.Op', () => {
    const [sourceText, fileText, execText] = definition.def.map((bytes) => protocDecode('pb.Op', bytes));

    expect(sourceText).toContain('identifier: "docker-image://docker.io/library/alpine:3.20"');
    expect(sourceText).toMatch(/attrs \{\s+key: "image.recordtype"\s+value: "internal"\s+\}/);
    expect(sourceText).toMatch(/platform \{\s+Architecture: "amd64"\s+OS: "linux"\s+\}/);

    expect(fileText).toContain(`digest: "${digestOf(sourceBytes)}"`);
    expect(fileText).toMatch(/mkdir \{\s+path: "\/app"\s+mode: 493\s+makeParents: true\s+owner \{\s+user \{\s+byID: 0\s+\}/);
    expect(fileText).toMatch(/copy \{\s+src: "\/etc\/hosts"\s+dest: "\/app\/hosts"\s+mode: -1\s+createDestPath: true\s+allowWildcard: true\s+timestamp: -1\s+\}/);
    expect(fileText).toContain('secondaryInput: -1');

    expect(execText).toMatch(/args: "\/bin\/sh"\s+args: "-c"\s+args: "echo hi"/);
    expect(execText).toContain('cwd: "/app"');
    expect(execText).toMatch(/mountType: CACHE\s+cacheOpt \{\s+ID: "go-build"\s+sharing: LOCKED\s+\}/);
    expect(execText).toMatch(/mountType: SECRET\s+secretOpt \{\s+ID: "token"\s+mode: 256\s+\}/);
    expect(execText).toMatch(/mountType: TMPFS\s+TmpfsOpt \{\s+size: 67108864\s+\}/);
    expect(execText).toContain('network: NONE');
  });

  it('writes map entries sorted by key, as Go deterministic marshalling does', () => {
    const text = protocDecode('pb.Definition', definitionBytes);
    const keys = [...text.matchAll(/^metadata \{\s+key: "([^"]+)"/gm)].map((m) => m[1]);
    expect(keys).toEqual([digestOf(execBytes), digestOf(sourceBytes)].sort());
    const sourceText = protocDecode('pb.Op', sourceBytes);
    expect([...sourceText.matchAll(/key: "([^"]+)"/g)].map((m) => m[1])).toEqual(['image.recordtype', 'image.resolvemode']);
  });
});

/**
 * Ops in protobuf text format covering every field reachable from pb.Op.
 * Map entries are written sorted by key: protoc --encode keeps the text's
 * order, and BuildKit (Go, deterministic) writes them sorted.
 */
const TEXT_OPS: Record<string, string> = {
  exec: `
    inputs { digest: "sha256:aaaa" index: 0 }
    inputs { digest: "sha256:bbbb" index: 2 }
    exec {
      meta {
        args: "/bin/sh" args: "-c" args: "make"
        env: "A=1" env: "B=2"
        cwd: "/src" user: "1000:1000"
        proxy_env { http_proxy: "http://p:1" https_proxy: "http://p:2" ftp_proxy: "ftp://p" no_proxy: "localhost" all_proxy: "socks5://p" }
        extraHosts { Host: "db" IP: "10.0.0.2" }
        hostname: "builder"
        ulimit { Name: "nofile" Soft: 1024 Hard: 4096 }
        cgroupParent: "/bkt"
        removeMountStubsRecursive: true
        validExitCodes: 0 validExitCodes: 3
      }
      mounts { input: 0 selector: "/sub" dest: "/" output: 0 readonly: false }
      mounts { input: 1 dest: "/ro" output: -1 readonly: true contentCache: ON }
      mounts { input: -1 dest: "/tmp" output: -1 mountType: TMPFS TmpfsOpt { size: 1048576 } }
      mounts { input: -1 dest: "/cache" output: -1 mountType: CACHE cacheOpt { ID: "c" sharing: PRIVATE } }
      mounts { input: -1 dest: "/run/secrets/s" output: -1 mountType: SECRET secretOpt { ID: "s" uid: 1 gid: 2 mode: 256 optional: true } }
      mounts { input: -1 dest: "/run/ssh" output: -1 mountType: SSH SSHOpt { ID: "default" uid: 3 gid: 4 mode: 384 optional: true } }
      mounts { input: 2 dest: "/res" output: -1 resultID: "r1" }
      network: HOST
      security: INSECURE
      secretenv { ID: "tok" name: "TOKEN" optional: true }
    }
    platform { Architecture: "arm64" OS: "linux" Variant: "v8" OSVersion: "x" OSFeatures: "f1" OSFeatures: "f2" }
    constraints { filter: "os==linux" filter: "arch==arm64" }
  `,
  source: `
    source {
      identifier: "git://github.com/moby/buildkit#v0.12.0"
      attrs { key: "10" value: "ten" }
      attrs { key: "9" value: "nine" }
      attrs { key: "git.fullurl" value: "https://github.com/moby/buildkit" }
      attrs { key: "git.keepgitdir" value: "true" }
    }
  `,
  file: `
    inputs { digest: "sha256:cccc" index: 0 }
    file {
      actions {
        input: 0 secondaryInput: -1 output: -1
        copy {
          src: "/a" dest: "/b"
          owner { user { byName { name: "root" input: 1 } } group { byID: 0 } }
          mode: -1 followSymlink: true dirCopyContents: true attemptUnpackDockerCompatibility: true
          createDestPath: true allowWildcard: true allowEmptyWildcard: true timestamp: 1700000000
          include_patterns: "*.go" exclude_patterns: "*_test.go"
          alwaysReplaceExistingDestPaths: true modeStr: "u+x"
        }
      }
      actions { input: 2 secondaryInput: -1 output: 0 mkfile { path: "/f" mode: 420 data: "hello\\n\\000" owner { user { byID: 1000 } } timestamp: -5 } }
      actions { input: 3 secondaryInput: -1 output: -1 mkdir { path: "/d" mode: 493 makeParents: true owner { group { byName { name: "staff" } } } timestamp: 1 } }
      actions { input: 4 secondaryInput: -1 output: 1 rm { path: "/x*" allowNotFound: true allowWildcard: true } }
    }
  `,
  build: `
    inputs { digest: "sha256:dddd" index: 0 }
    build {
      builder: -1
      inputs { key: "context" value { input: 0 } }
      inputs { key: "dockerfile" value { input: 1 } }
      def {
        def: "\\032\\003\\n\\001x"
        metadata { key: "sha256:1111" value { ignore_cache: true export_cache { Value: true } progress_group { id: "g" name: "group" weak: true } } }
        Source {
          locations { key: "sha256:2222" value { locations { sourceIndex: 0 ranges { start { line: 1 character: 0 } end { line: 1 character: 12 } } } } }
          infos { filename: "Dockerfile" data: "FROM scratch" language: "Dockerfile" definition { def: "\\032\\000" } }
        }
      }
      attrs { key: "filename" value: "Dockerfile" }
    }
  `,
  merge: `
    inputs { digest: "sha256:eeee" index: 0 }
    inputs { digest: "sha256:ffff" index: 0 }
    merge { inputs { input: 0 } inputs { input: 1 } }
  `,
  diff: `
    inputs { digest: "sha256:eeee" index: 0 }
    diff { lower { input: 0 } upper { input: 1 } }
  `,
  'empty source (defaults only)': `source { }`,
};

describe('pb.Op encoded by protoc from text format', () => {
  for (const [name, text] of Object.entries(TEXT_OPS)) {
    it(`${name}: our decoder reads it and our encoder reproduces protoc's bytes exactly`, () => {
      const protocBytes = protocEncode('pb.Op', text);
      const op = pb.Op.decode(protocBytes);
      const ours = Buffer.from(pb.Op.encode(op).finish());
      expect(ours.toString('hex')).toBe(protocBytes.toString('hex'));
      expect(digestOf(ours)).toBe(digestOf(protocBytes));
    });
  }

  it('decodes exec fields', () => {
    const op = pb.Op.decode(protocEncode('pb.Op', TEXT_OPS.exec));
    expect(op.inputs).toEqual([{ digest: 'sha256:aaaa', index: 0 }, { digest: 'sha256:bbbb', index: 2 }]);
    expect(op.op?.$case).toBe('exec');
    const exec = (op.op as { value: pb.ExecOp }).value;
    expect(exec.meta?.args).toEqual(['/bin/sh', '-c', 'make']);
    expect(exec.meta?.proxyEnv?.allProxy).toBe('socks5://p');
    expect(exec.meta?.ulimit).toEqual([{ Name: 'nofile', Soft: 1024, Hard: 4096 }]);
    expect(exec.meta?.validExitCodes).toEqual([0, 3]);
    expect(exec.mounts).toHaveLength(7);
    expect(exec.mounts[1]).toMatchObject({ input: 1, dest: '/ro', output: -1, readonly: true, contentCache: pb.MountContentCache.ON });
    expect(exec.mounts[2].TmpfsOpt).toEqual({ size: 1048576 });
    expect(exec.mounts[3].cacheOpt).toEqual({ ID: 'c', sharing: pb.CacheSharingOpt.PRIVATE });
    expect(exec.mounts[4].secretOpt).toEqual({ ID: 's', uid: 1, gid: 2, mode: 256, optional: true });
    expect(exec.mounts[5]).toMatchObject({ mountType: pb.MountType.SSH, SSHOpt: { ID: 'default', uid: 3, gid: 4, mode: 0o600, optional: true } });
    expect(exec.network).toBe(pb.NetMode.HOST);
    expect(exec.security).toBe(pb.SecurityMode.INSECURE);
    expect(exec.secretenv).toEqual([{ ID: 'tok', name: 'TOKEN', optional: true }]);
    expect(op.platform).toEqual({ Architecture: 'arm64', OS: 'linux', Variant: 'v8', OSVersion: 'x', OSFeatures: ['f1', 'f2'] });
    expect(op.constraints?.filter).toEqual(['os==linux', 'arch==arm64']);
  });

  it('decodes file actions, including oneof members set to their default value', () => {
    const op = pb.Op.decode(protocEncode('pb.Op', TEXT_OPS.file));
    if (op.op?.$case !== 'file') throw new Error('expected a file op');
    const [copy, mkfile, mkdir, rm] = op.op.value.actions;
    expect(copy.action?.$case).toBe('copy');
    expect(copy.action?.value).toMatchObject({
      src: '/a',
      mode: -1,
      timestamp: 1700000000,
      owner: { user: { user: { $case: 'byName', value: { name: 'root', input: 1 } } }, group: { user: { $case: 'byID', value: 0 } } },
      includePatterns: ['*.go'],
      modeStr: 'u+x',
    });
    expect(mkfile.action).toEqual({
      $case: 'mkfile',
      value: { path: '/f', mode: 0o644, data: Buffer.from('hello\n\0'), owner: { user: { user: { $case: 'byID', value: 1000 } }, group: undefined }, timestamp: -5 },
    });
    expect(mkdir.action?.$case).toBe('mkdir');
    expect(rm).toMatchObject({ input: 4, output: 1, action: { $case: 'rm', value: { path: '/x*', allowNotFound: true, allowWildcard: true } } });
  });

  it('decodes source attrs and build op maps', () => {
    const source = pb.Op.decode(protocEncode('pb.Op', TEXT_OPS.source));
    expect(source.op).toEqual({
      $case: 'source',
      value: { identifier: 'git://github.com/moby/buildkit#v0.12.0', attrs: { '10': 'ten', '9': 'nine', 'git.fullurl': 'https://github.com/moby/buildkit', 'git.keepgitdir': 'true' } },
    });
    const build = pb.Op.decode(protocEncode('pb.Op', TEXT_OPS.build));
    if (build.op?.$case !== 'build') throw new Error('expected a build op');
    expect(build.op.value.inputs).toEqual({ context: { input: 0 }, dockerfile: { input: 1 } });
    expect(build.op.value.def?.metadata['sha256:1111'].progressGroup).toEqual({ id: 'g', name: 'group', weak: true });
    expect(build.op.value.def?.Source?.infos[0].filename).toBe('Dockerfile');
  });

  it('writes map keys in byte order whatever the insertion order ("10" before "9")', () => {
    const inserted = pb.Op.fromPartial({ op: { $case: 'source', value: { identifier: 'x', attrs: { b: '2', '9': 'n', a: '1', '10': 't' } } } });
    const sortedText = `source { identifier: "x" attrs { key: "10" value: "t" } attrs { key: "9" value: "n" } attrs { key: "a" value: "1" } attrs { key: "b" value: "2" } }`;
    expect(Buffer.from(encodeOp(inserted)).toString('hex')).toBe(protocEncode('pb.Op', sortedText).toString('hex'));
  });
});

describe('sortedMapEntries', () => {
  it('orders string keys by UTF-8 bytes and integer keys numerically', () => {
    expect(sortedMapEntries({ b: 1, '\u{1F600}': 2, '\uFFFD': 3, a: 4 }).map(([k]) => k)).toEqual(['a', 'b', '\uFFFD', '\u{1F600}']);
    expect(sortedMapEntries({ '10': 1, '-3': 2, '9': 3 }, 'integer').map(([k]) => k)).toEqual(['-3', '9', '10']);
  });
});

describe('proto declarations', () => {
  it('declare every message field in field-number order (the generated encoders write declaration order)', () => {
    const set = fromBinary(FileDescriptorSetSchema, protocDescriptorSet(protoFiles()));
    const outOfOrder: string[] = [];
    let messages = 0;
    const visit = (prefix: string, message: { name?: string; field: { number?: number; name?: string }[]; nestedType: never[] }) => {
      messages++;
      const numbers = message.field.map((f) => f.number ?? 0);
      if (numbers.some((n, i) => i > 0 && n < numbers[i - 1])) outOfOrder.push(`${prefix}${message.name}: ${numbers.join(',')}`);
      for (const nested of message.nestedType) visit(`${prefix}${message.name}.`, nested);
    };
    for (const file of set.file) for (const message of file.messageType) visit(`${file.package}.`, message as never);
    expect(messages).toBeGreaterThan(150);
    expect(outOfOrder).toEqual([]);
  });
});
