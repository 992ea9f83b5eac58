/**
 * `bkt build TARGET…`: config targets, solved at once by one solver, so a
 * step they share runs once (as `docker buildx bake`), each with its own
 * outputs and local directories; and `bkt build --list`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BktError, isBktError, outputSpecOf, type BuildTarget, type OutputSpec, type Platform } from '@bkt/core';
import { writeOutputFile } from '@bkt/fsutil';
import type { SolveResponse } from '@bkt/solver';
import { dockerCredentials } from '../credentials.js';
import { parseCacheFlags } from '../cache-flags.js';
// The Docker engine client (node:http) is imported for --load only.
import type { DockerEngine } from '../docker-engine.js';
import { parseEntitlements } from '../entitlements.js';
import { parseLocalDirs, parseOutput, resolveDest } from '../options.js';
import { imageId, imageSummary, metadataJson, planOutputs } from '../outputs.js';
import { createDisplay } from '../progress/displays.js';
import { printWarnings, reportFailedSteps } from '../progress/report.js';
import { terminalSafe } from '../progress/terminal-safe.js';
import { openBackend } from '../backend.js';
import type { Project } from '../project.js';
import { targetProgress } from '../target-progress.js';
import { condensed, type BuildOptions, type Io } from './build.js';

/** Output types that write to a host path (`dest`), which the targets' local directories then leave out. */
const PATH_OUTPUTS = new Set(['local', 'tar', 'oci', 'docker']);

/** One target of the invocation, ready to solve. */
interface TargetPlan {
  name: string;
  target: BuildTarget;
  outputs: OutputSpec[];
  localDirs: Record<string, string>;
  /** The host paths its outputs write to. */
  destinations: string[];
  /** `--load`: the docker archive this target writes for the engine. */
  loadFile?: string;
}

/**
 * Builds the config targets `names` (given once each, in order) at once.
 * `-o`, `-t`, `--iidfile` name one build's outputs and are refused with
 * several targets; `--push`, `--platform`, `--load`, `--annotation`,
 * `--local` and `--allow` apply to every target. Exit code 0 when all
 * succeed; otherwise every target still runs to its end and the error names
 * the failed ones.
 */
export async function buildTargets(names: string[], project: Project, opts: BuildOptions, io: Io, signal: AbortSignal): Promise<number> {
  const unique = [...new Set(names)];
  const several = unique.length > 1;
  if (several) refuseOneBuildFlags(opts, unique);
  const platform = opts.platform !== undefined ? await platformFlag(opts.platform) : undefined;
  const entitlements = parseEntitlements(opts.allow);
  const load = opts.load ? await prepareLoad(io) : undefined;
  try {
    const plans = await Promise.all(unique.map((name) => planTarget(name, project, opts, io, load?.dir)));
    // No target reads what a target writes: these outputs' and every configured output's destinations stay out of the local dirs.
    const excluded = [...new Set([...plans.flatMap((p) => p.destinations), ...configuredDestinations(project)])];
    return await solveTargets(plans, project, opts, io, signal, { platform, entitlements, several, excluded, engine: load?.engine });
  } finally {
    if (load) await rm(load.dir, { recursive: true, force: true });
  }
}

/** `bkt build --list`: the config's targets and their descriptions, as `docker buildx bake --list=targets`. */
export function listTargets(project: Project, io: Io): number {
  const targets = Object.entries(project.config.targets ?? {});
  if (targets.length === 0) {
    io.stderr.write(`no targets in the config of ${project.dir}\n`);
    return 0;
  }
  const width = Math.max('TARGET'.length, ...targets.map(([name]) => name.length));
  io.stdout.write(`${'TARGET'.padEnd(width)}  DESCRIPTION\n`);
  for (const [name, target] of targets) {
    const description = typeof target?.description === 'string' ? target.description : '';
    io.stdout.write(terminalSafe(`${name.padEnd(width)}  ${description}`.trimEnd()) + '\n');
  }
  return 0;
}

function refuseOneBuildFlags(opts: BuildOptions, names: string[]): void {
  const flag = opts.output.length > 0 ? '--output' : opts.tag.length > 0 ? '--tag' : opts.iidfile !== undefined ? '--iidfile' : undefined;
  if (flag) {
    throw new BktError(
      'INVALID_ARGUMENT',
      `bkt build ${names.join(' ')}: ${flag} names the outputs of one build; with several targets, give each target its outputs in the config (or build one target)`,
      { attribute: flag.slice(2) },
    );
  }
}

async function platformFlag(value: string): Promise<Platform> {
  // @bkt/oci is imported for --platform only: this module is part of every build command's.
  const { normalizePlatform, parsePlatform } = await import('@bkt/oci');
  try {
    return normalizePlatform(parsePlatform(value));
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `--platform ${value}: ${(err as Error).message}`, { attribute: 'platform' }, { cause: err });
  }
}

/** `--load`: the engine must answer before anything is built; each target's archive goes to a file of a temp dir. */
async function prepareLoad(io: Io): Promise<{ engine: DockerEngine; dir: string }> {
  const { dockerEngine, pingDockerEngine } = await import('../docker-engine.js');
  const engine = dockerEngine(io.env ?? process.env);
  await pingDockerEngine(engine);
  return { engine, dir: await mkdtemp(join(tmpdir(), 'bkt-load-')) };
}

async function planTarget(name: string, project: Project, opts: BuildOptions, io: Io, loadDir: string | undefined): Promise<TargetPlan> {
  const targets = project.config.targets ?? {};
  const target = Object.hasOwn(targets, name) ? targets[name] : undefined;
  if (!target) {
    const known = Object.keys(targets);
    throw new BktError('NOT_FOUND', `no target "${name}" in the config of ${project.dir} (targets: ${known.length ? known.join(', ') : 'none'})`, {
      attribute: 'target',
    });
  }
  const configured = target.outputs ?? [];
  if (!Array.isArray(configured)) {
    throw new BktError('CONFIG', `target "${name}": "outputs" must be a list of outputs like { type: 'local', dest: 'out' }`, { attribute: 'outputs' });
  }
  const loadFile = loadDir ? join(loadDir, `${name.replace(/[^A-Za-z0-9._-]/g, '_')}.tar`) : undefined;
  const outputs = await inTargetAsync(name, () =>
    planOutputs(
      opts.output.length > 0
        ? opts.output.map((o) => parseOutput(o, io.cwd))
        : configured.map((o, i) => resolveDest(outputSpecOf(o, `target "${name}": outputs[${i}]`), project.dir)),
      { tags: opts.tag, push: !!opts.push, load: loadFile, annotations: opts.annotation },
    ),
  );
  const dirs = target.localDirs ?? { context: '.' };
  const localDirs = {
    ...Object.fromEntries(Object.entries(dirs).map(([k, v]) => [k, resolve(project.dir, v)])),
    ...parseLocalDirs(opts.local, io.cwd),
  };
  const destinations = outputs.filter((o) => PATH_OUTPUTS.has(o.type) && o.dest && o.dest !== '-').map((o) => o.dest!);
  return { name, target, outputs, localDirs, destinations, ...(loadFile ? { loadFile } : {}) };
}

/** The host paths the config's targets write to (their `local`, `tar`, `oci` and `docker` outputs), as far as they are well-formed. */
function configuredDestinations(project: Project): string[] {
  const dests: string[] = [];
  for (const target of Object.values(project.config.targets ?? {})) {
    for (const o of Array.isArray(target?.outputs) ? target.outputs : []) {
      const { type, dest } = (o ?? {}) as { type?: unknown; dest?: unknown };
      if (typeof type === 'string' && PATH_OUTPUTS.has(type) && typeof dest === 'string' && dest !== '' && dest !== '-') dests.push(resolve(project.dir, dest));
    }
  }
  return dests;
}

async function solveTargets(
  plans: TargetPlan[],
  project: Project,
  opts: BuildOptions,
  io: Io,
  signal: AbortSignal,
  run: { platform?: Platform; entitlements: string[]; several: boolean; excluded: string[]; engine?: DockerEngine },
): Promise<number> {
  const env = io.env ?? process.env;
  const debug = !!env.BKT_DEBUG;
  const color = !env.NO_COLOR;
  const display = createDisplay(opts.quiet ? 'quiet' : (opts.progress ?? 'auto'), io.stderr, { color, debug });
  const write = (event: Parameters<typeof display.write>[0]) => display.write(event);
  // --cache-from feeds every target; --cache-to exports one target's cache (several would overwrite each other's).
  const cache = await parseCacheFlags(opts, io.cwd);
  if (cache.exports.length > 0 && plans.length > 1) {
    throw new BktError('INVALID_ARGUMENT', `--cache-to exports the cache of one target; ${plans.length} targets were given (${plans.map((p) => p.name).join(', ')})`, { attribute: 'cache-to' });
  }
  const backend = await openBackend(opts, project);
  let settled: PromiseSettledResult<SolveResponse>[];
  try {
    settled = await Promise.allSettled(
      plans.map(async (plan) =>
        backend.solve({
          ...(await backend.targetSolve(plan.name, plan.target, run.platform, plan.outputs)),
          entitlements: run.entitlements,
          outputs: plan.outputs,
          ...(cache.imports.length > 0 ? { cacheImports: cache.imports } : {}),
          ...(cache.exports.length > 0 ? { cacheExports: cache.exports } : {}),
          ...(opts.explain ? { explain: true } : {}),
          host: {
            localDirs: { ...plan.localDirs, ...cache.localDirs },
            excludePaths: run.excluded,
            cwd: io.cwd,
            // Registry credentials as docker's: $DOCKER_CONFIG/config.json or ~/.docker/config.json, credential helpers.
            credentials: dockerCredentials(),
          },
          noCache: !opts.cache,
          signal,
          onProgress: run.several ? targetProgress(plan.name, write) : write,
        }),
      ),
    );
  } finally {
    await backend.close();
  }
  display.close();
  if (display.mode === 'plain' || display.mode === 'tty') printWarnings(display.trace.warnings, io.stderr, { color: color && display.mode === 'tty', debug });

  if (opts.explain) {
    for (const [i, s] of settled.entries()) {
      if (s.status !== 'fulfilled') continue;
      if (run.several) io.stderr.write(`target ${terminalSafe(plans[i]!.name)}:\n`);
      if (s.value.explanations) (await import('./history-explain.js')).printExplanations(s.value.explanations, io.stderr, { json: display.mode === 'rawjson' });
      else io.stderr.write('explain: not available for this build (through a daemon, bkt history explain reads a local store only)\n');
    }
  }
  const failed = settled.flatMap((s, i) => (s.status === 'rejected' ? [{ name: plans[i]!.name, error: s.reason as unknown }] : []));
  const reported = failed.length > 0 && !signal.aborted && reportFailedSteps(display.trace, io.stderr);
  await reportBuilt(plans, settled, opts, io, { quiet: display.mode === 'quiet', several: run.several, engine: run.engine });
  if (failed.length === 0) return 0;
  if (signal.aborted || !run.several) throw reported ? condensed(failed[0]!.error) : failed[0]!.error;
  throw targetsError(failed.map(({ name, error }) => ({ name, error: reported ? condensed(error) : error })), plans.length);
}

/**
 * What the targets that were built print and write: their closing lines
 * (prefixed `[NAME] ` when several), `--load`, `-q`'s image ids,
 * `--iidfile`, and `--metadata-file` (one target's response, or one per
 * target, as bake).
 */
async function reportBuilt(
  plans: TargetPlan[],
  settled: PromiseSettledResult<SolveResponse>[],
  opts: BuildOptions,
  io: Io,
  run: { quiet: boolean; several: boolean; engine?: DockerEngine },
): Promise<void> {
  const metadata: Record<string, unknown> = {};
  for (const [i, s] of settled.entries()) {
    if (s.status !== 'fulfilled') continue;
    const plan = plans[i]!;
    const response = s.value;
    const prefix = run.several ? `[${plan.name}] ` : '';
    const loaded = run.engine && plan.loadFile ? await (await import('../docker-engine.js')).loadIntoDockerEngine(run.engine, plan.loadFile) : [];
    if (!run.quiet) {
      const { stats } = response;
      io.stderr.write(`${prefix}solver time: ${(stats.solverMs / 1000).toFixed(3)}s (${stats.vertices} steps, ${stats.cached} cached)\n`);
      for (const line of await imageSummary(plan.outputs, response.exporterResponse)) io.stderr.write(`${prefix}${terminalSafe(line)}\n`);
      for (const line of loaded) io.stderr.write(`${prefix}${terminalSafe(line)} (Docker engine at ${run.engine!.url})\n`);
      if (plan.outputs.length === 0) io.stderr.write(`${prefix}no output specified: the result is kept in the build cache only (use --output, or -t NAME)\n`);
    }
    metadata[plan.name] = metadataJson(response.exporterResponse, response.buildId);
    const id = imageId(response.exporterResponse);
    if (opts.quiet && id) io.stdout.write(run.several ? `${plan.name} ${id}\n` : `${id}\n`);
    if (opts.iidfile) {
      if (!id) throw new BktError('INVALID_ARGUMENT', '--iidfile: the build exported no image (use -t NAME, --push or --output type=image|oci|docker)', { attribute: 'iidfile' });
      await writeOutputFile(opts.iidfile, id, { what: '--iidfile' }, io.cwd);
    }
  }
  if (opts.metadataFile && Object.keys(metadata).length > 0) {
    const json = JSON.stringify(run.several ? metadata : metadata[plans[0]!.name], null, 2) + '\n';
    await writeOutputFile(opts.metadataFile, json, { what: '--metadata-file' }, io.cwd);
  }
}

/** The error of several targets' builds when some failed: one failure as that target's, several listed with theirs. */
function targetsError(failed: { name: string; error: unknown }[], total: number): unknown {
  if (failed.length === 1) return inTargetError(failed[0]!.name, failed[0]!.error);
  const lines = failed.map(({ name, error }) => `  ${name}: ${(error as Error)?.message ?? String(error)}`);
  const first = failed[0]!.error;
  return new BktError(isBktError(first) ? first.code : 'INTERNAL', `${failed.length} of ${total} targets failed:\n${lines.join('\n')}`, {}, { cause: first });
}

/** Runs `fn`; a `BktError` it throws is told as one of target `name`. */
async function inTargetAsync<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw inTargetError(name, err);
  }
}

function inTargetError(name: string, err: unknown): unknown {
  if (!isBktError(err) || err.message.startsWith(`target "${name}"`)) return err;
  return new BktError(err.code, `target "${name}": ${err.message}`, err.details, { cause: err });
}
