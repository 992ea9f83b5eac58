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
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
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
  splitMessages(outDir, DEFINITION_SPLIT);
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

// Control's messages (and the worker records they carry) use only a few of
// ops.proto's messages: LLB's Definition with its metadata and source
// locations, ProgressGroup, Platform. Those (with what they use) are written
// to a module of their own, which ops.ts re-exports (its exports unchanged),
// and a generated file importing only them imports that module: loading
// Control's codecs does not load all of ops.ts.
export const DEFINITION_SPLIT = {
  file: 'github.com/moby/buildkit/solver/pb/ops.ts',
  into: 'definition.ts',
  roots: ['Definition', 'ProgressGroup', 'Range', 'SourceInfo', 'Platform'],
};

/** ts-proto's top-level declarations: each starts at column 0 (its doc comment included), its body indented. */
const DECLARATION = /^(export )?(?:declare )?(const|let|function|class|enum|type|interface) (\w+)/;

/** A generated file's header (comments and imports) and its declarations, each with the name it declares. */
function parseDeclarations(text, file) {
  const lines = text.split('\n');
  const starts = [];
  let comment = -1;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith('/**')) {
      if (comment < 0) comment = i;
    } else if (DECLARATION.test(line)) {
      starts.push(comment >= 0 ? comment : i);
      comment = -1;
    } else if (line !== '' && !/^[\s}*)]/.test(line) && !line.startsWith('import ') && !line.startsWith('//') && !line.startsWith('/*')) {
      throw new Error(`${file}:${i + 1}: unexpected top-level line (ts-proto output changed?): ${line}`);
    }
  }
  if (starts.length === 0) throw new Error(`${file}: no declarations found (ts-proto output changed?)`);
  const header = lines.slice(0, starts[0]).join('\n');
  const declarations = starts.map((start, k) => {
    const body = lines.slice(start, starts[k + 1] ?? lines.length).join('\n');
    const line = body.split('\n').find((l) => DECLARATION.test(l));
    const [, exported, kind, name] = DECLARATION.exec(line);
    return { body, name, exported: exported !== undefined, type: kind === 'type' || kind === 'interface' };
  });
  return { header, declarations };
}

/** Identifiers a piece of code uses (comments and strings left out). */
function identifiersOf(code) {
  const bare = code.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '').replace(/"(?:[^"\\\n]|\\.)*"/g, '""');
  return new Set(bare.match(/[A-Za-z_$][\w$]*/g));
}

function splitMessages(outDir, split) {
  const file = join(outDir, split.file);
  const { header, declarations } = parseDeclarations(readFileSync(file, 'utf8'), file);
  const byName = new Map();
  for (const d of declarations) byName.set(d.name, [...(byName.get(d.name) ?? []), d]);
  // The roots and everything they use.
  const moved = new Set();
  const todo = [...split.roots];
  while (todo.length > 0) {
    const name = todo.pop();
    if (moved.has(name)) continue;
    if (!byName.has(name)) throw new Error(`${file}: no declaration of ${name} (ts-proto output changed?)`);
    moved.add(name);
    for (const d of byName.get(name)) for (const id of identifiersOf(d.body)) if (id !== name && byName.has(id) && !moved.has(id)) todo.push(id);
  }
  const movedDecls = declarations.filter((d) => moved.has(d.name));
  // What the original keeps: everything else, and its own copy of the unexported helpers (isSet, …) it uses.
  const kept = new Set(declarations.filter((d) => !moved.has(d.name)).map((d) => d.name));
  for (let grew = true; grew; ) {
    grew = false;
    for (const d of declarations) {
      if (!kept.has(d.name)) continue;
      for (const id of identifiersOf(d.body)) {
        if (!kept.has(id) && byName.has(id) && byName.get(id).every((u) => !u.exported)) {
          kept.add(id);
          grew = true;
        }
      }
    }
  }
  const keptDecls = declarations.filter((d) => kept.has(d.name));
  const exportedNames = [...moved].filter((n) => byName.get(n).some((d) => d.exported)).sort();
  const typeOnly = (n) => byName.get(n).every((d) => d.type);
  const values = exportedNames.filter((n) => !typeOnly(n));
  const types = exportedNames.filter(typeOnly);

  // The header's imports, each kept where something uses one of its names.
  const imports = header.match(/^import [\s\S]*?;\n/gm) ?? [];
  const preamble = header.slice(0, header.indexOf(imports[0] ?? '\n\n'));
  const importsFor = (decls) => {
    const used = identifiersOf(decls.map((d) => d.body).join('\n'));
    return imports.filter((imp) => [...identifiersOf(imp.replace(/from "[^"]*"/, ''))].some((n) => n !== 'import' && n !== 'type' && used.has(n))).join('');
  };
  const intoBase = split.into.replace(/\.ts$/, '.js');
  const source = split.file.replace(/\.ts$/, '.proto');
  writeFileSync(
    join(dirname(file), split.into),
    `${preamble.trimEnd()}\n// The messages of ${source} that ${split.roots.join(', ')} need; ${basename(split.file)} re-exports them (generate.mjs splitMessages).\n\n` +
      `${importsFor(movedDecls)}\n${movedDecls.map((d) => d.body).join('\n')}`.replace(/\n*$/, '\n'),
  );
  const reexport =
    `import { ${values.join(', ')} } from "./${intoBase}";\n` +
    (types.length > 0 ? `import type { ${types.join(', ')} } from "./${intoBase}";\n` : '') +
    `\nexport { ${values.join(', ')} };\n` +
    (types.length > 0 ? `export type { ${types.join(', ')} };\n` : '');
  writeFileSync(file, `${header.trimEnd()}\n${reexport}\n${keptDecls.map((d) => d.body).join('\n')}`.replace(/\n*$/, '\n'));

  // Generated files importing only moved names import the new module.
  const oldBase = basename(split.file).replace(/\.ts$/, '.js');
  const exported = new Set(exportedNames);
  for (const other of generatedFiles(outDir)) {
    if (other === file) continue;
    const text = readFileSync(other, 'utf8');
    const rewritten = text.replace(new RegExp(`^import (type )?\\{([^}]*)\\} from "([^"]*/)${oldBase.replace('.', '\\.')}";$`, 'gm'), (whole, type, names, dir) => {
      if (join(dirname(other), dir, oldBase) !== file.replace(/\.ts$/, '.js')) return whole;
      const list = names.split(',').map((n) => n.trim().replace(/^type /, '')).filter(Boolean);
      return list.every((n) => exported.has(n)) ? `import ${type ?? ''}{${names}} from "${dir}${intoBase}";` : whole;
    });
    if (rewritten !== text) writeFileSync(other, rewritten);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outDir = generate(process.argv[2] ? resolve(process.argv[2]) : undefined);
  console.log(`generated ${relative(process.cwd(), outDir) || '.'}`);
}
