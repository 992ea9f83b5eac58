#!/usr/bin/env node
// Generates the TypeScript message codecs and gRPC service definitions of
// @bkt/api from the proto files in <repo>/proto, using protoc (npm package
// `protoc`) with the ts-proto plugin.
//
// Usage: node scripts/generate.mjs [outDir]   (default: packages/api/src/gen)
// The output directory is emptied first, so it holds exactly what protoc wrote,
// after one rewrite (see sortMapEncoding): map fields are encoded sorted by key,
// as BuildKit's Go marshalling does, so that op digests match BuildKit's.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const repoRoot = resolve(packageDir, '../..');
const protoRoot = join(repoRoot, 'proto');

/** Options handed to ts-proto; they shape the generated API, so change them deliberately. */
export const TS_PROTO_OPTIONS = [
  'outputServices=grpc-js',
  'esModuleInterop=true',
  'importSuffix=.js',
  'forceLong=number',
  'env=node',
  'useDate=false',
  'oneof=unions-value',
];

/** Absolute path of the protoc binary shipped by the `protoc` npm package, for this platform. */
export function protocPath() {
  const require = createRequire(join(packageDir, 'package.json'));
  const protocPackage = dirname(require.resolve('protoc/package.json'));
  const arch = { x64: 'x86_64', arm64: 'aarch_64' }[process.arch];
  const os = { linux: 'linux', darwin: 'osx' }[process.platform];
  const binary = join(protocPackage, 'bin', `protoc-${os}-${arch}`);
  if (!arch || !os || !existsSync(binary)) {
    throw new Error(`protoc binary for ${process.platform}/${process.arch} not found in ${protocPackage}/bin`);
  }
  return binary;
}

/** Include path holding google/protobuf/*.proto (shipped with the protoc npm package). */
export function protocIncludeDir() {
  return join(dirname(dirname(protocPath())), 'include');
}

export function protoRootDir() {
  return protoRoot;
}

/** All .proto files under proto/, relative to it, sorted for a stable protoc invocation. */
export function protoFiles(dir = protoRoot) {
  const found = [];
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) found.push(...protoFiles(full));
    else if (name.endsWith('.proto')) found.push(relative(protoRoot, full).split(sep).join('/'));
  }
  return found.sort();
}

function tsProtoPlugin() {
  let dir = packageDir;
  for (;;) {
    const candidate = join(dir, 'node_modules', '.bin', 'protoc-gen-ts_proto');
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('protoc-gen-ts_proto not found in any node_modules/.bin above ' + packageDir);
    dir = parent;
  }
}

export function generate(outDir = join(packageDir, 'src', 'gen')) {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  execFileSync(
    protocPath(),
    [
      `--plugin=protoc-gen-ts_proto=${tsProtoPlugin()}`,
      `--ts_proto_out=${outDir}`,
      `--ts_proto_opt=${TS_PROTO_OPTIONS.join(',')}`,
      `-I${protoRoot}`,
      `-I${protocIncludeDir()}`,
      ...protoFiles(),
    ],
    { stdio: 'inherit', cwd: protoRoot },
  );
  for (const file of generatedFiles(outDir)) {
    sortMapEncoding(outDir, file);
    lenientLongToNumber(file);
    lazyGrpcClients(outDir, file);
    ownWireClasses(outDir, file);
  }
  return outDir;
}

/** `../` up to the output directory's parent (src/) from `file`, where the hand-written helpers are. */
function helperPath(outDir, file, helper) {
  const depth = relative(outDir, dirname(file)).split(sep).filter(Boolean).length;
  return `${'../'.repeat(depth + 1)}${helper}`;
}

function generatedFiles(dir) {
  const found = [];
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) found.push(...generatedFiles(full));
    else if (name.endsWith('.ts')) found.push(full);
  }
  return found;
}

// ts-proto encodes a map as `globalThis.Object.entries(message.f).forEach(...)`.
// Replace the entries with sortedMapEntries (src/map-order.ts), which orders
// them like Go's deterministic marshalling. The key kind comes from the
// generated `<Entry>` interface: `key: number` for integer-keyed maps.
const MAP_ENCODE = /globalThis\.Object\.entries\((message\.\w+)\)\.forEach\((\(\[key, value\]: \[[^\]]+\]\) => \{\s*(\w+)\.encode)/g;

function sortMapEncoding(outDir, file) {
  const text = readFileSync(file, 'utf8');
  let count = 0;
  const rewritten = text.replace(MAP_ENCODE, (_match, field, rest, entryType) => {
    count++;
    const integerKey = new RegExp(`export interface ${entryType} \\{\\s*key: number;`).test(text);
    return `sortedMapEntries(${field}${integerKey ? ", 'integer'" : ''}).forEach(${rest}`;
  });
  if (count === 0) return;
  const helper = helperPath(outDir, file, 'map-order.js');
  const wireImport = 'import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";\n';
  if (!rewritten.includes(wireImport)) throw new Error(`${file}: cannot place the map-order import (ts-proto output changed?)`);
  writeFileSync(file, rewritten.replace(wireImport, `${wireImport}import { sortedMapEntries } from "${helper}";\n`));
}

// ts-proto's forceLong=number decoder throws on int64 values beyond 2^53. LLB
// carries nanosecond timestamps (~1.7e18) in int64 fields, so decoding a real
// definition must not throw: such values decode to the nearest double (exact
// for whole-second timestamps, which is what SOURCE_DATE_EPOCH produces).
// Digests never depend on it: an op's digest is taken over its original bytes.
const LONG_TO_NUMBER = /function longToNumber\(int64: \{ toString\(\): string \}\): number \{[\s\S]*?\n\}\n/;

function lenientLongToNumber(file) {
  const text = readFileSync(file, 'utf8');
  if (!text.includes('function longToNumber(')) return;
  const rewritten = text.replace(
    LONG_TO_NUMBER,
    'function longToNumber(int64: { toString(): string }): number {\n  return globalThis.Number(int64.toString());\n}\n',
  );
  if (rewritten === text) throw new Error(`${file}: cannot rewrite longToNumber (ts-proto output changed?)`);
  writeFileSync(file, rewritten);
}

// ts-proto imports grpc-js's `Client` and `makeGenericClientConstructor` as
// values (the rest as types) and makes each service's client constructor when
// the module loads, so every namespace with a service would load grpc-js.
// The import becomes type-only, and the constructors come from
// src/grpc-client.ts, which loads grpc-js when a client is first made.
const GRPC_IMPORT = /import \{([^}]*)\} from "@grpc\/grpc-js";\n/;

function lazyGrpcClients(outDir, file) {
  const text = readFileSync(file, 'utf8');
  const found = GRPC_IMPORT.exec(text);
  if (!found) return;
  const names = found[1].split(',').map((s) => s.trim()).filter(Boolean);
  const values = names.filter((n) => !n.startsWith('type '));
  if (values.join() !== 'Client,makeGenericClientConstructor') throw new Error(`${file}: unexpected grpc-js value imports ${values.join(', ')} (ts-proto output changed?)`);
  const types = names.filter((n) => n !== 'makeGenericClientConstructor').map((n) => n.replace(/^type /, ''));
  const imports =
    `import type {\n${types.map((t) => `  ${t},\n`).join('')}} from "@grpc/grpc-js";\n` +
    `import { makeGenericClientConstructor } from "${helperPath(outDir, file, 'grpc-client.js')}";\n`;
  writeFileSync(file, text.replace(GRPC_IMPORT, imports));
}

// ts-proto imports BinaryReader and BinaryWriter from `@bufbuild/protobuf/wire`,
// whose index also loads its text format and reflection. The codecs take them
// from src/binary.ts instead (the same methods, the same bytes).
const WIRE_IMPORT = 'import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";\n';

function ownWireClasses(outDir, file) {
  const text = readFileSync(file, 'utf8');
  if (!text.includes(WIRE_IMPORT)) {
    if (text.includes('@bufbuild/protobuf')) throw new Error(`${file}: cannot replace the @bufbuild/protobuf import (ts-proto output changed?)`);
    return;
  }
  writeFileSync(file, text.replace(WIRE_IMPORT, `import { BinaryReader, BinaryWriter } from "${helperPath(outDir, file, 'binary.js')}";\n`));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outDir = generate(process.argv[2] ? resolve(process.argv[2]) : undefined);
  console.log(`generated ${relative(process.cwd(), outDir) || '.'}`);
}
