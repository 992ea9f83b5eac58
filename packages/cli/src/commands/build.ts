import { statSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BktError, isBktError, type OutputSpec } from '@bkt/core';
import { writeOutputFile } from '@bkt/fsutil';
import type { SolveResponse } from '@bkt/solver';
// The Docker engine client (node:http) is imported for --load only.
import type { DockerEngine } from '../docker-engine.js';
import { parseEntitlements } from '../entitlements.js';
import { prepareDockerfileSolve, hasDockerfileFlags, type DockerfileFlags, type DockerfileSolve } from '../dockerfile.js';
import { parseLocalDirs, parseOutput } from '../options.js';
import { dockerCredentials } from '../credentials.js';
import { parseCacheFlags, type CacheFlags } from '../cache-flags.js';
import { checkAttestationFlags, imageId, imageSummary, metadataJson, planOutputs, type AttestationFlags } from '../outputs.js';
import { createDisplay, type Output, type ProgressMode } from '../progress/displays.js';
import { printWarnings, reportFailedSteps } from '../progress/report.js';
import { terminalSafe } from '../progress/terminal-safe.js';
import { openBackend } from '../backend.js';
import { debugConfig, parseInvoke, type Invocation } from '../invoke.js';
import { openProject, type Project, type ProjectOptions } from '../project.js';
import type { DaemonFlags } from '../remote/address.js';
import { namingFlag, progressMode } from './build-flags.js';
import { buildTargets, listTargets } from './build-targets.js';
import { parseCall, printCallResult, refuseExports, type CallRequest } from './call.js';

export interface BuildOptions extends ProjectOptions, DaemonFlags, DockerfileFlags, AttestationFlags, Partial<CacheFlags> {
  output: string[];
  /** `--progress`; when absent, `BUILDKIT_PROGRESS`, else `auto`. */
  progress?: ProgressMode;
  /** `--call NAME[,format=json]`: ask the Dockerfile frontend `check`, `outline` or `targets` instead of building; `--check` = `--call check`. */
  call?: string;
  check?: boolean;
  /** `--load`: load the image into the local Docker engine. */
  load?: boolean;
  /** `-q`: no progress; only the image id, on stdout. */
  quiet?: boolean;
  annotation: string[];
  llb?: string;
  local: string[];
  metadataFile?: string;
  iidfile?: string;
  tag: string[];
  push?: boolean;
  /** `--list`: print the config's targets and their descriptions instead of building. */
  list?: boolean;
  /** `--explain`: why each step that ran missed the cache. */
  explain?: boolean;
  /** `--invoke CMD`: run CMD in the result (or, `on-error`, in the failed step), attached to this terminal. */
  invoke?: string;
  /** Set by `bkt debug --on WHEN build …`. */
  debugOn?: string;
}

/** The streams a command writes to (the process's, or a test's). */
export interface Io {
  stdin: NodeJS.ReadableStream;
  stdout: Output;
  stderr: Output;
  cwd: string;
  env?: NodeJS.ProcessEnv;
}

/** What `bkt build` solves here: an `--llb` definition, or a Dockerfile through the `dockerfile.v0` frontend (config targets: build-targets.ts). */
type BuildInput =
  | { kind: 'llb'; definition: Uint8Array; entitlements: string[] }
  | { kind: 'dockerfile'; solve: DockerfileSolve; call?: CallRequest };

/**
 * `bkt build [TARGET… | CONTEXT]`. The argument is a Dockerfile build's
 * CONTEXT when `-f` or another Dockerfile flag is given, when it is `-`, or
 * when it is not a target of the project's config (no config, or a directory
 * that is not a target's name); otherwise the arguments name config targets
 * (default `default`), built at once. `--llb` solves a marshalled
 * definition; `--list` lists the targets.
 *
 * Exit codes: 0 ok, 1 failed, 130 / 143 interrupted by SIGINT / SIGTERM.
 */
export async function buildCommand(args: string[], opts: BuildOptions, io: Io, signal: AbortSignal): Promise<number> {
  const [arg] = args;
  checkAttestationFlags(opts);
  const progress = progressMode(opts.progress, io.env ?? process.env);
  const call = parseCall(opts.call, opts.check);
  if (call) refuseExports(call, opts);
  const dockerfileFlags = hasDockerfileFlags(opts) || call !== undefined;
  if (opts.llb !== undefined && dockerfileFlags) {
    throw new BktError('INVALID_ARGUMENT', 'bkt build: --llb and Dockerfile flags (-f, --target, --build-arg, …) can\'t be used together');
  }
  if (opts.llb !== undefined && opts.platform !== undefined) {
    throw new BktError('INVALID_ARGUMENT', 'bkt build: --platform applies to Dockerfile builds and config targets; an --llb definition has its platforms already', { attribute: 'platform' });
  }
  const configRequired = opts.llb === undefined && !dockerfileFlags && arg === undefined;
  const project = await openProject(opts, configRequired, io.cwd).catch((err: unknown) => {
    // No config and no argument: the user may have meant a Dockerfile build.
    if (configRequired && isBktError(err) && err.code === 'CONFIG' && /no config file/.test(err.message)) {
      throw new BktError('CONFIG', `${err.message}; to build a Dockerfile, give its context: bkt build [-f Dockerfile] .`, err.details, { cause: err });
    }
    throw err;
  });
  const isTarget = arg !== undefined && project.hasConfig && Object.hasOwn(project.config.targets ?? {}, arg);
  const isContext = arg !== undefined && !isTarget && (!project.hasConfig || isDirectory(resolve(io.cwd, arg)));
  const dockerfileMode = opts.llb === undefined && (dockerfileFlags || arg === '-' || isContext);
  if (opts.list) {
    if (args.length > 0 || opts.llb !== undefined || dockerfileFlags) throw new BktError('INVALID_ARGUMENT', 'bkt build --list takes no target, context, --llb or Dockerfile flag', { attribute: 'list' });
    return listTargets(project, io);
  }
  if (opts.llb === undefined && !dockerfileMode && (opts.invoke !== undefined || opts.debugOn !== undefined)) {
    throw new BktError('INVALID_ARGUMENT', `${opts.debugOn !== undefined ? 'bkt debug' : '--invoke'}: applies to a Dockerfile build or an --llb definition, not to config targets`, { attribute: 'invoke' });
  }
  if (opts.llb === undefined && !dockerfileMode) return buildTargets(args.length > 0 ? args : ['default'], project, { ...opts, progress }, io, signal);
  if (args.length > 1) {
    const what = opts.llb !== undefined ? 'an --llb build takes no argument' : 'a Dockerfile build takes one CONTEXT';
    throw new BktError('INVALID_ARGUMENT', `bkt build ${args.join(' ')}: ${what} (several arguments name config targets)`);
  }

  let input: BuildInput;
  if (opts.llb !== undefined) {
    if (arg !== undefined) throw new BktError('INVALID_ARGUMENT', `bkt build: give either a target ("${arg}") or --llb, not both`);
    input = { kind: 'llb', entitlements: parseEntitlements(opts.allow), definition: await readDefinitionFile(opts.llb, io) };
  } else {
    if (arg === undefined) {
      throw new BktError('INVALID_ARGUMENT', 'bkt build: a Dockerfile build needs a CONTEXT directory (e.g. `bkt build -f Dockerfile .`), or - for a Dockerfile on stdin');
    }
    const solve = await prepareDockerfileSolve(opts, { context: arg, cwd: io.cwd, stdin: io.stdin, env: io.env });
    if (call) solve.frontendAttrs.requestid = call.requestId;
    input = { kind: 'dockerfile', solve, ...(call ? { call } : {}) };
  }

  try {
    return await runBuild(input, project, { ...opts, progress }, io, signal);
  } catch (err) {
    throw input.kind === 'dockerfile' ? namingFlag(err, input.solve.frontendAttrs) : err;
  } finally {
    if (input.kind === 'dockerfile') await input.solve.close();
  }
}

async function runBuild(input: BuildInput, project: Project, opts: BuildOptions, io: Io, signal: AbortSignal): Promise<number> {
  // --load: the engine must answer before anything is built; the archive goes through a temp file.
  let load: { engine: DockerEngine; dir: string; file: string } | undefined;
  if (opts.load) {
    const { dockerEngine, pingDockerEngine } = await import('../docker-engine.js');
    const engine = dockerEngine(io.env ?? process.env);
    await pingDockerEngine(engine);
    const dir = await mkdtemp(join(tmpdir(), 'bkt-load-'));
    load = { engine, dir, file: join(dir, 'image.tar') };
  }
  try {
    return await runBuildTo(input, project, opts, io, signal, load);
  } finally {
    if (load) await rm(load.dir, { recursive: true, force: true });
  }
}

async function runBuildTo(
  input: BuildInput,
  project: Project,
  opts: BuildOptions,
  io: Io,
  signal: AbortSignal,
  load: { engine: DockerEngine; file: string } | undefined,
): Promise<number> {
  const outputs: OutputSpec[] = await planOutputs(
    opts.output.map((o) => parseOutput(o, io.cwd)),
    { tags: opts.tag, push: !!opts.push, load: load?.file, annotations: opts.annotation },
  );
  const cache = await parseCacheFlags(opts, io.cwd);
  const localDirs = {
    ...(input.kind === 'dockerfile' ? input.solve.localDirs : {}),
    ...parseLocalDirs(opts.local, io.cwd),
    ...cache.localDirs,
  };

  const env = io.env ?? process.env;
  const debug = !!env.BKT_DEBUG;
  // NO_COLOR (no-color.org): a non-empty value turns colours off.
  const color = !env.NO_COLOR;
  const display = createDisplay(opts.quiet ? 'quiet' : (opts.progress ?? 'auto'), io.stderr, { color, debug });
  let displayClosed = false;
  let failureReported = false;
  /** Ends the live display, then (plain, tty) lists the build's warnings, as buildx does after a build. */
  const closeDisplay = () => {
    if (displayClosed) return;
    displayClosed = true;
    display.close();
    if (display.mode === 'plain' || display.mode === 'tty') printWarnings(display.trace.warnings, io.stderr, { color: color && display.mode === 'tty', debug });
  };
  const invoke = opts.debugOn !== undefined ? debugConfig(opts.debugOn, opts.invoke) : opts.invoke !== undefined ? parseInvoke(opts.invoke) : undefined;
  // The process runs with the build still open; the display ends (and a failure is reported) before it starts.
  const invocation: Invocation | undefined = invoke && {
    config: invoke,
    io,
    secretIds: input.kind === 'dockerfile' ? (opts.secret ?? []).map((s) => /(?:^|,)id=([^,]*)/.exec(s)?.[1] ?? s) : [],
    beforeRun: (outcome) => {
      closeDisplay();
      if (outcome.error) failureReported = reportFailedSteps(display.trace, io.stderr);
    },
  };
  const backend = await openBackend(opts, project);
  let response: SolveResponse;
  try {
    response = await backend.solve({
      ...(input.kind === 'llb'
        ? { definition: input.definition, entitlements: input.entitlements }
        : {
            frontend: input.solve.frontend,
            frontendAttrs: input.solve.frontendAttrs,
            entitlements: input.solve.entitlements,
          }),
      outputs,
      host: {
        localDirs,
        cwd: io.cwd,
        // Registry credentials as docker's: $DOCKER_CONFIG/config.json or ~/.docker/config.json, credential helpers.
        credentials: dockerCredentials(),
        ...(input.kind === 'dockerfile' ? { secrets: input.solve.secrets, ssh: input.solve.ssh } : {}),
      },
      noCache: !opts.cache,
      ...(cache.imports.length > 0 ? { cacheImports: cache.imports } : {}),
      ...(cache.exports.length > 0 ? { cacheExports: cache.exports } : {}),
      ...(opts.explain ? { explain: true } : {}),
      signal,
      onProgress: (event) => display.write(event),
      ...(invocation ? { invoke: invocation } : {}),
    });
  } catch (err) {
    closeDisplay();
    if (failureReported) throw condensed(err);
    if (!signal.aborted && reportFailedSteps(display.trace, io.stderr)) throw condensed(err);
    throw err;
  } finally {
    await backend.close();
  }
  closeDisplay();

  if (input.kind === 'dockerfile' && input.call) return printCallResult(input.call, response.result.metadata, io.stdout);
  if (opts.explain) {
    if (!response.explanations) io.stderr.write('explain: not available for this build (through a daemon, bkt history explain reads a local store only)\n');
    // The history's reader (the solver, the store) is loaded only to print explanations.
    else (await import('./history-explain.js')).printExplanations(response.explanations, io.stderr, { json: display.mode === 'rawjson' });
  }
  const { stats } = response;
  const loaded = load ? await (await import('../docker-engine.js')).loadIntoDockerEngine(load.engine, load.file) : [];
  // Quiet (`-q`, `--progress quiet`) prints nothing but errors, and on stdout what was asked for.
  if (display.mode !== 'quiet') {
    io.stderr.write(`solver time: ${(stats.solverMs / 1000).toFixed(3)}s (${stats.vertices} steps, ${stats.cached} cached)\n`);
    for (const line of await imageSummary(outputs, response.exporterResponse)) io.stderr.write(`${terminalSafe(line)}\n`);
    for (const line of loaded) io.stderr.write(`${terminalSafe(line)} (Docker engine at ${load!.engine.url})\n`);
    if (outputs.length === 0 && !opts.output.some(isCacheOnly)) {
      io.stderr.write('no output specified: the result is kept in the build cache only (use --output, or -t NAME)\n');
    }
  }
  if (opts.metadataFile) {
    const json = JSON.stringify(metadataJson(response.exporterResponse, response.buildId), null, 2) + '\n';
    await writeOutputFile(opts.metadataFile, json, { what: '--metadata-file' }, io.cwd);
  }
  if (opts.iidfile) {
    const id = response.exporterResponse['containerimage.config.digest'] ?? response.exporterResponse['containerimage.digest'];
    if (!id) throw new BktError('INVALID_ARGUMENT', '--iidfile: the build exported no image (use -t NAME, --push or --output type=image|oci|docker)', { attribute: 'iidfile' });
    await writeOutputFile(opts.iidfile, id, { what: '--iidfile' }, io.cwd);
  }
  if (opts.quiet) {
    const id = imageId(response.exporterResponse);
    if (id) io.stdout.write(`${id}\n`);
  }
  return 0;
}

const isCacheOnly = (spec: string) => /(^|,)\s*type=cacheonly\s*(,|$)/i.test(spec);

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Reads a marshalled definition from a file, or all of stdin for `-`; an empty one is an error. */
async function readDefinitionFile(file: string, io: Io): Promise<Uint8Array> {
  let bytes: Uint8Array;
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of io.stdin) chunks.push(Buffer.from(chunk as Buffer));
    bytes = Buffer.concat(chunks);
  } else {
    try {
      bytes = await readFile(resolve(io.cwd, file));
    } catch (err) {
      throw new BktError('NOT_FOUND', `--llb ${file}: ${(err as Error).message}`, { path: file });
    }
  }
  if (bytes.length === 0) {
    const where = file === '-' ? 'standard input was empty' : `"${file}" is empty`;
    throw new BktError('INVALID_ARGUMENT', `--llb ${file}: empty definition (${where}; expected a marshalled pb.Definition)`, { path: file });
  }
  return bytes;
}

/** The error without the step output its message may repeat (already shown above it): first line and op digest. */
export function condensed(err: unknown): unknown {
  if (!(err instanceof BktError) || !err.message.includes('\n')) return err;
  const [first] = err.message.split('\n');
  const op = /\(op sha256:[0-9a-f]{64}\)$/.exec(err.message);
  const message = op && !first!.includes(op[0]) ? `${first} ${op[0]}` : first!;
  return new BktError(err.code, message, err.details, { cause: err });
}
