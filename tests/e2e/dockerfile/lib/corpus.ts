/**
 * The Dockerfile conformance corpus: loading the cases of `../cases/` and
 * preparing one for a build (a copy with its placeholders filled in).
 *
 * Used both by the harness (`../dockerfile.test.ts`, building with bkt) and by
 * `scripts/dockerfile-peers/regenerate` (building with a peer), so both build
 * exactly the same inputs. The layout of a case is described in `../README.md`.
 */
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CASES_DIR = fileURLToPath(new URL('../cases', import.meta.url));

/** `case.json`: everything a case needs besides its Dockerfile. All fields optional. */
export interface CaseSpec {
  /** The Dockerfile's name in the case directory (default `Dockerfile`); its `<name>.dockerignore` sits beside it. */
  dockerfile?: string;
  /** `--build-arg K=V`. */
  args?: Record<string, string>;
  /** `--target`. */
  target?: string;
  /** `--build-context NAME=DIR`, DIR relative to the case directory. */
  contexts?: Record<string, string>;
  /** `--secret id=ID,src=FILE` (FILE relative to the case) or `id=ID,env=VAR` (the harness sets VAR to `value`). */
  secrets?: { id: string; src?: string; env?: string; value?: string }[];
  /** `--ssh ID` for each id, all forwarded to the harness's ssh-agent. */
  ssh?: string[];
  /**
   * A Dockerfile (in the case directory, same context) built and pushed to
   * the test registry first; the case's Dockerfile refers to it as `{{PARENT}}`.
   */
  parent?: string;
  /** Compare only these paths and what is under them (absolute, no trailing slash). */
  paths?: string[];
  /** Leave these out: `/p` drops `/p` and everything under it, `/p/` only what is under it. */
  ignore?: string[];
  /** Modes (octal strings) set on the prepared copy, relative to the case: git keeps no directory modes. */
  chmod?: Record<string, string>;
  /** The build must fail: bkt's error must match `match` (a regex; `(?i)` prefix = case-insensitive) and name `Dockerfile:line`. */
  error?: { line?: number; match?: string };
  /**
   * Corrections to the peer's listing where the peer's version predates a
   * behaviour of current BuildKit (each with its reason); the regenerate
   * script applies them and records them in expected.json's `adjusted`.
   */
  adjust?: { path: string; mode?: string; reason: string }[];
  /** Strings that must appear in no file of the result (e.g. secret values). */
  forbidden?: string[];
  note?: string;
}

export interface Case {
  /** The directory name, e.g. `12-run-heredoc`. */
  name: string;
  /** Absolute path of the case directory. */
  dir: string;
  spec: CaseSpec;
  /**
   * `Dockerfile.peer`, when present: a Dockerfile giving the same image by
   * other means, built by a peer whose frontend predates a feature the case
   * is about (see the case's expected.json `peer`).
   */
  peerDockerfile?: string;
}

export async function loadCases(dir = CASES_DIR): Promise<Case[]> {
  const names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  const out: Case[] = [];
  for (const name of names) {
    const caseDir = join(dir, name);
    const specFile = join(caseDir, 'case.json');
    const spec = existsSync(specFile) ? (JSON.parse(await readFile(specFile, 'utf8')) as CaseSpec) : {};
    out.push({ name, dir: caseDir, spec, peerDockerfile: existsSync(join(caseDir, 'Dockerfile.peer')) ? 'Dockerfile.peer' : undefined });
  }
  return out;
}

/** What the placeholders of a Dockerfile stand for in one run. */
export interface Placeholders {
  /** `{{BASE}}`: the busybox image, `127.0.0.1:PORT/busybox:latest`. */
  base: string;
  /** `{{REGISTRY}}`: `127.0.0.1:PORT`. */
  registry: string;
  /** `{{HTTP}}`: `http://127.0.0.1:PORT/<case>` serving the case's `http/` directory. */
  http?: string;
  /** `{{GIT}}`: `git://127.0.0.1:PORT/<case>` serving the repositories made from the case's `git/` directory. */
  git?: string;
  /** `{{PARENT}}`: the image built from the case's `parent` Dockerfile. */
  parent?: string;
}

export function fillPlaceholders(text: string, p: Placeholders): string {
  return text.replace(/\{\{(BASE|REGISTRY|HTTP|GIT|PARENT)\}\}/g, (whole, key: string) => {
    const value = { BASE: p.base, REGISTRY: p.registry, HTTP: p.http, GIT: p.git, PARENT: p.parent }[key];
    if (value === undefined) throw new Error(`placeholder ${whole} has no value in this run`);
    return value;
  });
}

/** A case copied to a work directory, ready for `build -f dockerfile contextDir`. */
export interface PreparedCase {
  /** The copy of the case directory. */
  root: string;
  /** Absolute path of the Dockerfile to build (placeholders filled). */
  dockerfile: string;
  /** Absolute path of the parent Dockerfile, when the case has one. */
  parentDockerfile?: string;
  /** The build context: the copy's `context/`, or an empty directory. */
  contextDir: string;
  /** name → absolute directory. */
  contexts: Record<string, string>;
  /** The secrets with absolute `src`. */
  secrets: { id: string; src?: string; env?: string; value?: string }[];
  /** Environment the build needs (env-sourced secrets). */
  env: Record<string, string>;
}

/**
 * Copies `c` to `workDir` and fills the placeholders of its Dockerfiles.
 * `dockerfile` picks another Dockerfile of the case (the peer's variant).
 */
export async function prepareCase(c: Case, workDir: string, p: Placeholders, opts: { dockerfile?: string } = {}): Promise<PreparedCase> {
  await cp(c.dir, workDir, { recursive: true, verbatimSymlinks: true });
  for (const [rel, mode] of Object.entries(c.spec.chmod ?? {})) await chmod(join(workDir, rel), parseInt(mode, 8));
  const name = opts.dockerfile ?? c.spec.dockerfile ?? 'Dockerfile';
  for (const file of [name, c.spec.parent].filter((f): f is string => !!f)) {
    const abs = join(workDir, file);
    await writeFile(abs, fillPlaceholders(await readFile(abs, 'utf8'), p));
  }
  const contextDir = join(workDir, 'context');
  await mkdir(contextDir, { recursive: true });
  const env: Record<string, string> = {};
  const secrets = (c.spec.secrets ?? []).map((s) => {
    if (s.env) env[s.env] = s.value ?? '';
    return { ...s, src: s.src ? resolve(workDir, s.src) : undefined };
  });
  const contexts = Object.fromEntries(Object.entries(c.spec.contexts ?? {}).map(([k, v]) => [k, resolve(workDir, v)]));
  return {
    root: workDir,
    dockerfile: join(workDir, name),
    parentDockerfile: c.spec.parent ? join(workDir, c.spec.parent) : undefined,
    contextDir,
    contexts,
    secrets,
    env,
  };
}

/** `(?i)re` → a case-insensitive RegExp; anything else as is. */
export function caseRegex(source: string): RegExp {
  return source.startsWith('(?i)') ? new RegExp(source.slice(4), 'i') : new RegExp(source);
}
