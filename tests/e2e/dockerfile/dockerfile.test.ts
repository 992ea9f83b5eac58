/**
 * The Dockerfile conformance corpus, built with bkt: each case of `cases/` is
 * built by the CLI (`bkt build -f … --output type=oci,dest=… CONTEXT`) and its
 * image config and root filesystem listing are compared with the case's
 * `expected.json`, which a peer builder produced (its `peer` field says which:
 * see scripts/dockerfile-peers/regenerate). Error cases must fail with an
 * error naming `Dockerfile:LINE`.
 *
 * Skipped while `packages/frontend-dockerfile/dist/index.js` does not exist
 * (run `npm run build` first); a dist that fails to import, or exports no
 * `dockerfile.v0` frontend, fails the file.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it, type ExpectStatic } from 'vitest';
import { BKT, REPO } from '../helpers.js';
import { CASES_DIR, caseRegex, loadCases, prepareCase, type Case, type PreparedCase } from './lib/corpus.js';
import { startFixtures, type Fixtures } from './lib/fixtures.js';
import { baseTree, configFields, registryImageConfig, registryImageToArchive, summarizeArchive, type Entry } from './lib/image.js';

/**
 * False when `packages/frontend-dockerfile/dist/index.js` does not exist (not
 * built: the corpus is skipped). When it exists it must load and export a
 * plugin (or a frontend) named `dockerfile.v0`; otherwise this throws, failing
 * the file rather than skipping the corpus silently.
 */
async function dockerfileFrontendBuilt(): Promise<boolean> {
  const entry = join(REPO, 'packages/frontend-dockerfile/dist/index.js');
  if (!existsSync(entry)) return false;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(entry).href)) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${entry} exists but importing it failed (rebuild it: npm run build): ${(err as Error)?.stack ?? err}`, { cause: err });
  }
  const isFrontend = (v: unknown) =>
    !!v && typeof v === 'object' && (v as { name?: unknown }).name === 'dockerfile.v0' && typeof (v as { solve?: unknown }).solve === 'function';
  const isPlugin = (v: unknown) =>
    !!v && typeof v === 'object' && Array.isArray((v as { frontends?: unknown }).frontends) && (v as { frontends: unknown[] }).frontends.some(isFrontend);
  // The default export is the plugin factory.
  const plugin = typeof mod.default === 'function' ? (mod.default as () => unknown)() : undefined;
  if (isPlugin(plugin) || Object.values(mod).some((v) => isFrontend(v) || isPlugin(v))) return true;
  throw new Error(`${entry} exports no plugin or frontend named dockerfile.v0 (exports: ${Object.keys(mod).join(', ') || 'none'})`);
}

const ready = await dockerfileFrontendBuilt();
const cases = await loadCases();

interface Expected {
  peer: string;
  error?: string;
  config?: Record<string, unknown>;
  parentConfig?: Record<string, unknown>;
  files?: Entry[];
  removed?: string[];
}

/**
 * Cases build concurrently, at most CORPUS_CONCURRENCY (default 3) at a time,
 * sharing one set of servers. A store root belongs to one process at a time,
 * so each slot has its own (reused by the cases that take the slot after it).
 */
const CONCURRENCY = Math.max(1, Number(process.env.CORPUS_CONCURRENCY) || 3);

describe.skipIf(!ready)('Dockerfile corpus (expected values from peer builders)', () => {
  const slots = semaphore(CONCURRENCY);
  let fx: Fixtures;
  let base: { tree: Entry[]; diffId: string };
  let work: string;

  beforeAll(async () => {
    fx = await startFixtures(CASES_DIR, cases);
    work = await mkdtemp(join(tmpdir(), 'bkt-corpus-'));
    await registryImageToArchive(fx.base.reference, join(work, 'base.tar'));
    base = await baseTree(join(work, 'base.tar'));
  });

  afterAll(async () => {
    await fx?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** `bkt build` of one Dockerfile of a prepared case with the store `root`; `output` is an `--output` spec. */
  async function bktBuild(c: Case, p: PreparedCase, root: string, dockerfile: string, output: string) {
    const args = ['build', '--root', root, '--progress', 'plain', '-f', dockerfile, '--output', output];
    for (const [k, v] of Object.entries(c.spec.args ?? {})) args.push('--build-arg', `${k}=${v}`);
    if (c.spec.target) args.push('--target', c.spec.target);
    for (const [name, dir] of Object.entries(p.contexts)) args.push('--build-context', `${name}=${dir}`);
    for (const s of p.secrets) args.push('--secret', s.src ? `id=${s.id},src=${s.src}` : `id=${s.id},env=${s.env}`);
    for (const id of c.spec.ssh ?? []) args.push('--ssh', `${id}=${fx.sshAuthSock}`);
    args.push(p.contextDir);
    const r = await execa('node', [BKT, ...args], { cwd: p.root, reject: false, env: { ...p.env, BKT_DEBUG: '' }, timeout: 170_000 });
    return { code: r.exitCode ?? -1, output: `${r.stdout}\n${r.stderr}` };
  }

  for (const c of cases) {
    it.concurrent(c.name, async ({ expect }) => {
      const slot = await slots.acquire();
      try {
        await buildAndCompare(c, join(work, `store-${slot}`), expect);
      } finally {
        slots.release(slot);
      }
    });
  }

  async function buildAndCompare(c: Case, root: string, expect: ExpectStatic): Promise<void> {
    const expectedFile = join(c.dir, 'expected.json');
    if (!existsSync(expectedFile)) throw new Error(`${c.name}: no expected.json; run scripts/dockerfile-peers/regenerate ${c.name}`);
    const expected = JSON.parse(await readFile(expectedFile, 'utf8')) as Expected;
    const dir = await mkdtemp(join(work, `${c.name}-`));
    try {
      const placeholders = fx.placeholders(c);
      if (c.spec.parent) placeholders.parent = `${fx.registry.host}/corpus/${c.name}-parent:bkt`;
      const p = await prepareCase(c, join(dir, 'case'), placeholders);

      if (c.spec.parent) {
        const parent = await bktBuild(c, p, root, p.parentDockerfile!, `type=image,name=${placeholders.parent},push=true`);
        expect(parent.code, `parent build of ${c.name}:\n${parent.output}`).toBe(0);
        if (expected.parentConfig) {
          const config = await registryImageConfig(fx.registry.host, placeholders.parent!.slice(fx.registry.host.length + 1));
          expect(configFields(config), `parent image config (peer: ${expected.peer})`).toEqual(expected.parentConfig);
        }
      }

      const archive = join(dir, 'image.tar');
      const r = await bktBuild(c, p, root, p.dockerfile, `type=oci,dest=${archive}`);
      if (c.spec.error) {
        expect(r.code, `${c.name} must fail (peer failed with: ${expected.error})`).not.toBe(0);
        if (c.spec.error.match) expect(r.output).toMatch(caseRegex(c.spec.error.match));
        if (c.spec.error.line) expect(r.output).toContain(`${basename(p.dockerfile)}:${c.spec.error.line}`);
        return;
      }
      expect(r.code, `bkt build of ${c.name}:\n${r.output}`).toBe(0);
      const actual = await summarizeArchive(archive, { base, paths: c.spec.paths, ignore: c.spec.ignore, forbidden: c.spec.forbidden });
      expect(actual.forbiddenFound, 'secret values in the image').toEqual([]);
      expect(actual.config, `image config (peer: ${expected.peer})`).toEqual(expected.config);
      expect(actual.files, `root filesystem (peer: ${expected.peer})`).toEqual(expected.files);
      expect(actual.removed, `base paths removed (peer: ${expected.peer})`).toEqual(expected.removed);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
});

/** `n` numbered slots: `acquire()` waits for a free one and returns its number. */
function semaphore(n: number): { acquire(): Promise<number>; release(slot: number): void } {
  const free = Array.from({ length: n }, (_, i) => i);
  const waiting: ((slot: number) => void)[] = [];
  return {
    acquire: () => (free.length > 0 ? Promise.resolve(free.shift()!) : new Promise((resolve) => waiting.push(resolve))),
    release: (slot) => {
      const next = waiting.shift();
      if (next) next(slot);
      else free.push(slot);
    },
  };
}

describe('Dockerfile corpus (files)', () => {
  it('has at least 45 cases, each with a Dockerfile and a peer expectation', () => {
    expect(cases.length).toBeGreaterThanOrEqual(45);
    for (const c of cases) {
      expect(existsSync(join(c.dir, c.spec.dockerfile ?? 'Dockerfile')), `${c.name}: Dockerfile`).toBe(true);
      expect(existsSync(join(c.dir, 'expected.json')), `${c.name}: expected.json (run scripts/dockerfile-peers/regenerate)`).toBe(true);
    }
  });
});
