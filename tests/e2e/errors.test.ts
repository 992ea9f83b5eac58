/**
 * Issue 2 acceptance: each bad input gets a clear error, exit code 1, and
 * nothing written to the store. Every case runs against a store warmed by a
 * good build of the same context, so "nothing written" compares a populated
 * store before and after. (Paths escaping the context: tests/e2e/security/context-escapes.test.ts.)
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, copyOp, definition, expectBuildRejected, mkfileOp, op, removeDir, sourceOp, tempDir } from './helpers.js';

let work: string;
let root: string;
let context: string;

const contextSource = sourceOp('local://context');
/** A good definition: copies /hello.txt of the context. */
const goodDef = definition([contextSource, copyOp(contextSource, '/hello.txt', '/hello.txt')], copyOp(contextSource, '/hello.txt', '/hello.txt'));

beforeAll(async () => {
  work = await tempDir('errors');
  root = join(work, 'store');
  context = join(work, 'ctx');
  await mkdir(context);
  await writeFile(join(context, 'hello.txt'), 'hello\n');
  await writeFile(join(work, 'good.pb'), goodDef);
  const r = await bkt(['build', '--llb', 'good.pb', '--local', `context=${context}`, '--root', root, '--progress', 'plain', '-o', 'type=local,dest=good-out'], { cwd: work });
  expect(r.stderr).toContain('solver time');
  expect(r.code).toBe(0);
  expect(readFileSync(join(work, 'good-out/hello.txt'), 'utf8')).toBe('hello\n');
});

afterAll(async () => {
  await removeDir(work);
});

/** Runs `args`, expects exit 1 with `message` on stderr, no output written and the store unchanged. */
const expectRejected = (args: string[], message: RegExp, opts: { cwd?: string; input?: Uint8Array } = {}) =>
  expectBuildRejected({ work, root }, args, message, opts);

describe('bad LLB definitions (--llb)', () => {
  it('a malformed protobuf', async () => {
    await writeFile(join(work, 'garbage.pb'), Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    await expectRejected(['--llb', 'garbage.pb'], /malformed LLB definition/);
  });

  it('a truncated protobuf on stdin', async () => {
    await expectRejected(['--llb', '-'], /malformed/, { input: goodDef.subarray(0, goodDef.length - 7) });
  });

  it('an input that is not in the definition (a dangling edge; a cycle cannot be expressed with content digests)', async () => {
    const missing = sourceOp('local://never-included');
    const copy = copyOp(missing, '/x', '/x');
    const r = await expectRejected(['--llb', '-'], /is not in the definition/, { input: definition([copy], copy) });
    expect(r.stderr).toContain(copy.digest);
  });

  it('an input index out of range', async () => {
    const mk = mkfileOp('/a', 'a'); // one output: index 0
    const bad = op({
      inputs: [{ digest: mk.digest, index: 3 }],
      op: { $case: 'file', value: { actions: [{ input: 0, secondaryInput: -1, output: 0, action: { $case: 'mkdir', value: { path: '/d', mode: 0o755 } } }] } },
    });
    const r = await expectRejected(['--llb', '-'], /output 3 of .* which has 1 outputs/, { input: definition([mk, bad], bad) });
    expect(r.stderr).toContain(bad.digest);
  });

  it('a return op pointing past the outputs', async () => {
    const mk = mkfileOp('/a', 'a');
    await expectRejected(['--llb', '-'], /has 1 outputs/, { input: definition([mk], { digest: mk.digest, index: 1 }) });
  });
});

describe('bad configs', () => {
  async function project(name: string, config: string): Promise<string> {
    const dir = join(work, name);
    await mkdir(dir);
    await writeFile(join(dir, 'bkt.config.ts'), config);
    return dir;
  }
  const goodBuild = `Uint8Array.from(Buffer.from('${Buffer.from(goodDef).toString('base64')}', 'base64'))`;

  it('a syntax error is reported with file:line', async () => {
    const dir = await project(
      'syntax',
      `import { defineConfig } from '@bkt/core';\nexport default defineConfig({\n  targets: {\n    default: { build: ( },\n  },\n});\n`,
    );
    await expectRejected([], new RegExp(`${join(dir, 'bkt.config.ts').replaceAll('/', '\\/')}:4:\\d+`), { cwd: dir });
  });

  it('an unknown plugin package is named', async () => {
    const dir = await project(
      'unknown-plugin',
      `import { defineConfig } from '@bkt/core';\nexport default defineConfig({\n  plugins: ['bkt-plugin-does-not-exist'],\n  targets: { default: { build: ${goodBuild} } },\n});\n`,
    );
    await expectRejected([], /cannot load plugin "bkt-plugin-does-not-exist"/, { cwd: dir });
  });

  it('two plugins registering the same key are both named', async () => {
    const exporter = `{ type: 'zip', resolve: async () => ({ export: async () => ({}) }) }`;
    const dir = await project(
      'duplicate',
      `import { defineConfig } from '@bkt/core';\nexport default defineConfig({\n  plugins: [\n    { name: 'plugin-one', exporters: [${exporter}] },\n    { name: 'plugin-two', exporters: [${exporter}] },\n  ],\n  targets: { default: { build: ${goodBuild} } },\n});\n`,
    );
    await expectRejected([], /exporter "zip" is registered twice: by plugin-one and by plugin-two/, { cwd: dir });
  });

  it('a plugin reusing a built-in key names the built-in package too', async () => {
    const dir = await project(
      'builtin-duplicate',
      `import { defineConfig } from '@bkt/core';\nexport default defineConfig({\n  plugins: [{ name: 'my-local', sources: [{ schemes: ['local'], identify: () => { throw new Error('x'); }, resolve: async () => { throw new Error('x'); } }] }],\n  targets: { default: { build: ${goodBuild} } },\n});\n`,
    );
    await expectRejected([], /source "local" is registered twice: by @bkt\/source-local and by my-local/, { cwd: dir });
  });

  it('an unknown target lists the known ones', async () => {
    const dir = await project('targets', `export default { targets: { one: { build: ${goodBuild} }, two: { build: ${goodBuild} } } };\n`);
    await expectRejected(['three'], /no target "three" .*\(targets: one, two\)/, { cwd: dir });
  });

  it('an unknown exporter attribute is named', async () => {
    const r = await bkt(['build', '--llb', 'good.pb', '--local', `context=${context}`, '--root', root, '-o', 'type=local,dest=x,compression=zstd'], { cwd: work });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown attribute "compression"/);
  });
});
