/**
 * Helpers of the end-to-end tests: run the built `bkt` CLI, make temp
 * projects inside the repository (so their configs resolve `@bkt/*` from the
 * root node_modules), hand-craft LLB definitions with the `@bkt/api` codecs,
 * and take a fingerprint of a store to prove a failed build wrote nothing.
 */
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { pb } from '@bkt/api';
import { createBkt } from '@bkt/core';
import { openSolver } from '@bkt/solver';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const BKT = join(REPO, 'packages/cli/bin/bkt.js');

/**
 * A `--require` preload for start-up tests: the built `bkt` runs its chunks
 * as scripts (`dist-bin/scripts/`, V8's code cache: packages/cli/src/code-cache.ts),
 * which no ESM hook sees. It appends `script:` and the URL of the chunk in
 * `dist-bin/` to the file `$BKT_TEST_MODULES` for each script compiled.
 */
export const RECORD_SCRIPTS_PRELOAD = `const vm = require('node:vm');
const { appendFileSync } = require('node:fs');
const { pathToFileURL } = require('node:url');
const Script = vm.Script;
vm.Script = class extends Script {
  constructor(code, options) {
    super(code, options);
    const m = /^(.*\\/dist-bin)\\/scripts\\/([^/]+\\.js)$/.exec(options?.filename ?? '');
    if (m) appendFileSync(process.env.BKT_TEST_MODULES, 'script:' + pathToFileURL(m[1] + '/' + m[2]).href + '\\n');
  }
};
`;
const TMP = join(REPO, 'tests/e2e/.tmp');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout as bytes (a tar on stdout is not text). */
  stdoutBytes: Buffer;
}

/** Runs `node bin/bkt.js ARGS` in `cwd`; never throws on a non-zero exit. */
export async function bkt(args: string[], opts: { cwd: string; input?: Uint8Array | string; timeoutMs?: number }): Promise<RunResult> {
  const r = await execa('node', [BKT, ...args], {
    cwd: opts.cwd,
    input: opts.input,
    reject: false,
    stripFinalNewline: false,
    timeout: opts.timeoutMs ?? 120_000,
    env: { BKT_DEBUG: '' },
    encoding: 'buffer',
  });
  const stdoutBytes = Buffer.from(r.stdout as Uint8Array);
  return { code: r.exitCode ?? -1, stdout: stdoutBytes.toString('utf8'), stderr: Buffer.from(r.stderr as Uint8Array).toString('utf8'), stdoutBytes };
}

/** A fresh directory under tests/e2e/.tmp (inside the repo, so node resolution finds the workspace). */
export async function tempDir(prefix: string): Promise<string> {
  await mkdir(TMP, { recursive: true });
  return mkdtemp(join(TMP, `${prefix}-`));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Every entry under `dir` as `path type mode [uid:gid] size|target sha256`, sorted: a tree's full fingerprint. */
export async function describeTree(dir: string, opts: { owners?: boolean } = {}): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string) => {
    for (const name of (await readdir(d)).sort()) {
      const abs = join(d, name);
      const st = await lstat(abs);
      const rel = relative(dir, abs);
      const mode = (st.mode & 0o7777).toString(8);
      const owner = opts.owners ? ` ${st.uid}:${st.gid}` : '';
      if (st.isDirectory()) {
        out.push(`${rel}/ dir ${mode}${owner}`);
        await visit(abs);
      } else if (st.isSymbolicLink()) {
        out.push(`${rel} -> ${await readlink(abs)}${owner}`);
      } else {
        const sum = createHash('sha256').update(await readFile(abs)).digest('hex').slice(0, 12);
        out.push(`${rel} file ${mode}${owner} ${st.size} ${sum}`);
      }
    }
  };
  await visit(dir);
  return out;
}

/**
 * What a store holds: its snapshot and content files (names and sizes) and
 * its usage records minus their usage stamps. The metadata
 * database files themselves are left out (SQLite may checkpoint on open).
 */
export async function storeFingerprint(root: string): Promise<{ files: string[]; records: string[] }> {
  const files: string[] = [];
  const visit = async (d: string) => {
    let names: string[];
    try {
      names = (await readdir(d)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const abs = join(d, name);
      const rel = relative(root, abs);
      if (/\.(db|sqlite)(-wal|-shm|-journal)?$/.test(name)) continue;
      const st = await lstat(abs);
      if (st.isDirectory()) {
        files.push(`${rel}/`);
        await visit(abs);
      } else files.push(`${rel} ${st.size}`);
    }
  };
  await visit(root);
  // The records, read in-process (spawning `bkt du` per check is slow); `bkt du` itself is tested in hello.test.ts.
  const solver = await openSolver({ root, bkt: await createBkt([]) });
  try {
    // Reusing a cached record bumps its usage count and last-used time; that is not new content.
    const records = (await solver.diskUsage()).map(({ usageCount: _u, lastUsedAt: _l, inUse: _i, ...rest }) => JSON.stringify(rest)).sort();
    return { files, records };
  } finally {
    await solver.close();
  }
}

// ---------------------------------------------------------------------------
// Hand-made LLB (independent of @bkt/llb, so malformed graphs can be made too).
// ---------------------------------------------------------------------------

export interface RawOp {
  bytes: Uint8Array;
  digest: string;
}

export function op(partial: Parameters<typeof pb.Op.fromPartial>[0]): RawOp {
  const bytes = pb.Op.encode(pb.Op.fromPartial(partial)).finish();
  return { bytes, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
}

export function sourceOp(identifier: string, attrs: Record<string, string> = {}): RawOp {
  return op({ op: { $case: 'source', value: { identifier, attrs } } });
}

/** A file op copying `src` of input `from` onto `dest` of scratch (one action, output 0). */
export function copyOp(from: RawOp, src: string, dest: string, opts: { followSymlink?: boolean } = {}): RawOp {
  return op({
    inputs: [{ digest: from.digest, index: 0 }],
    op: {
      $case: 'file',
      value: {
        actions: [
          {
            input: -1,
            secondaryInput: 0,
            output: 0,
            action: {
              $case: 'copy',
              value: { src, dest, mode: -1, followSymlink: opts.followSymlink ?? false, createDestPath: true, timestamp: -1 },
            },
          },
        ],
      },
    },
  });
}

/** A file op making one file on scratch (output 0). */
export function mkfileOp(path: string, data: string): RawOp {
  return op({
    op: {
      $case: 'file',
      value: {
        actions: [{ input: -1, secondaryInput: -1, output: 0, action: { $case: 'mkfile', value: { path, mode: 0o644, data: Buffer.from(data), timestamp: -1 } } }],
      },
    },
  });
}

/** The marshalled definition of `ops` ending with a return op naming output `index` of `result`. */
export function definition(ops: RawOp[], result: { digest: string; index?: number }): Uint8Array {
  const ret = op({ inputs: [{ digest: result.digest, index: result.index ?? 0 }] });
  return pb.Definition.encode(pb.Definition.fromPartial({ def: [...ops, ret].map((o) => Buffer.from(o.bytes)) })).finish();
}

/**
 * The build steps of a `--progress rawjson` stderr, last state per digest.
 * Export vertices (`exporting to …`) are left out: they run on every build.
 */
export function vertices(stderr: string): Map<string, { name: string; cached: boolean; completed?: string; error?: string }> {
  const out = new Map<string, { name: string; cached: boolean; completed?: string; error?: string }>();
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    const obj = JSON.parse(line) as { vertexes?: { digest: string; name: string; cached: boolean; completed?: string; error?: string }[] };
    for (const v of obj.vertexes ?? []) {
      if (v.name.startsWith('exporting ')) continue;
      out.set(v.digest, { ...out.get(v.digest), ...v });
    }
  }
  return out;
}

/** The solver time the CLI printed, in ms. */
export function solverMs(stderr: string): number {
  const m = /solver time: (\d+\.\d+)s/.exec(stderr);
  if (!m) throw new Error(`no solver time in:\n${stderr}`);
  return Number(m[1]) * 1000;
}

/**
 * Runs `bkt build ARGS` against the populated store `root` with a fresh
 * `type=local` output under `work`; expects exit 1 with `message` on stderr,
 * no output written, the store unchanged, and no line of the host's
 * /etc/passwd anywhere in the output.
 */
export async function expectBuildRejected(
  where: { work: string; root: string },
  args: string[],
  message: RegExp,
  opts: { cwd?: string; input?: Uint8Array } = {},
): Promise<RunResult> {
  const { expect } = await import('vitest');
  const passwdLine = (await readFile('/etc/passwd', 'utf8')).split('\n')[0]!;
  const before = await storeFingerprint(where.root);
  expect(before.records.length).toBeGreaterThan(0); // a populated store: the comparison below means something
  const out = join(where.work, `out-${Math.random().toString(36).slice(2)}`);
  const r = await bkt(['build', ...args, '--root', where.root, '--progress', 'plain', '-o', `type=local,dest=${out}`], { cwd: opts.cwd ?? where.work, input: opts.input });
  expect(r.stderr).toMatch(message);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^error: /m);
  expect(await storeFingerprint(where.root)).toEqual(before);
  expect(await readdir(out).catch(() => 'absent')).toBe('absent');
  expect(r.stdout + r.stderr).not.toContain(passwdLine);
  return r;
}
