import { statSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as pb from '@bkt/api/pb';
import { BktError, isBktError, type BuildTarget, type OutputSpec } from '@bkt/core';
import { createHostClient, writeOutputFile } from '@bkt/fsutil';
import { dockerConfigCredentials, forBuildClient } from '@bkt/registry';
import type { SolveResponse } from '@bkt/solver';
import { dockerEngine, loadIntoDockerEngine, pingDockerEngine, type DockerEngine } from '../docker-engine.js';
import { prepareDockerfileSolve, hasDockerfileFlags, type DockerfileFlags, type DockerfileSolve } from '../dockerfile.js';
import { parseLocalDirs, parseOutput, resolveDest } from '../options.js';
import { checkAttestationFlags, imageId, imageSummary, metadataJson, planOutputs, type AttestationFlags } from '../outputs.js';
import { createDisplay, type Output, type ProgressDisplay, type ProgressMode } from '../progress/displays.js';
import { terminalSafe } from '../progress/terminal-safe.js';
import { openBuilder, openProject, type Project, type ProjectOptions } from '../project.js';

export interface BuildOptions extends ProjectOptions, DockerfileFlags, AttestationFlags {
  output: string[];
  progress: ProgressMode;
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
}

/** The streams a command writes to (the process's, or a test's). */
export interface Io {
  stdin: NodeJS.ReadableStream;
  stdout: Output;
  stderr: Output;
  cwd: string;
  env?: NodeJS.ProcessEnv;
}

/** What `bkt build` solves: an LLB definition (a config target or `--llb`), or a Dockerfile through the `dockerfile.v0` frontend. */
type BuildInput =
  | { kind: 'llb'; definition: Uint8Array; target?: BuildTarget }
  | { kind: 'dockerfile'; solve: DockerfileSolve };

/**
 * `bkt build [TARGET | CONTEXT]`. The argument is a Dockerfile build's
 * CONTEXT when `-f` or another Dockerfile flag is given, when it is `-`, or
 * when it is not a target of the project's config (no config, or a directory
 * that is not a target's name); otherwise it names a config target (default
 * `default`). `--llb` solves a marshalled definition.
 *
 * Exit codes: 0 ok, 1 failed, 130 / 143 interrupted by SIGINT / SIGTERM.
 */
export async function buildCommand(arg: string | undefined, opts: BuildOptions, io: Io, signal: AbortSignal): Promise<number> {
  checkAttestationFlags(opts);
  const dockerfileFlags = hasDockerfileFlags(opts);
  if (opts.llb !== undefined && dockerfileFlags) {
    throw new BktError('INVALID_ARGUMENT', 'bkt build: --llb and Dockerfile flags (-f, --target, --build-arg, -t, …) can\'t be used together');
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

  let input: BuildInput;
  if (opts.llb !== undefined) {
    if (arg !== undefined) throw new BktError('INVALID_ARGUMENT', `bkt build: give either a target ("${arg}") or --llb, not both`);
    input = { kind: 'llb', definition: await readDefinitionFile(opts.llb, io) };
  } else if (dockerfileMode) {
    if (arg === undefined) {
      throw new BktError('INVALID_ARGUMENT', 'bkt build: a Dockerfile build needs a CONTEXT directory (e.g. `bkt build -f Dockerfile .`), or - for a Dockerfile on stdin');
    }
    input = { kind: 'dockerfile', solve: await prepareDockerfileSolve(opts, { context: arg, cwd: io.cwd, stdin: io.stdin, env: io.env }) };
  } else {
    const target = pickTarget(project, arg ?? 'default');
    input = { kind: 'llb', definition: await marshalTarget(target, arg ?? 'default'), target };
  }

  try {
    return await runBuild(input, project, opts, io, signal);
  } finally {
    if (input.kind === 'dockerfile') await input.solve.close();
  }
}

async function runBuild(input: BuildInput, project: Project, opts: BuildOptions, io: Io, signal: AbortSignal): Promise<number> {
  // --load: the engine must answer before anything is built; the archive goes through a temp file.
  let load: { engine: DockerEngine; dir: string; file: string } | undefined;
  if (opts.load) {
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
  const target = input.kind === 'llb' ? input.target : undefined;
  const outputs: OutputSpec[] = planOutputs(
    opts.output.length > 0 ? opts.output.map((o) => parseOutput(o, io.cwd)) : (target?.outputs ?? []).map((o) => resolveDest(o, project.dir)),
    { tags: opts.tag, push: !!opts.push, load: load?.file, annotations: opts.annotation },
  );
  const localDirs = {
    ...Object.fromEntries(Object.entries(target?.localDirs ?? (target ? { context: '.' } : {})).map(([k, v]) => [k, resolve(project.dir, v)])),
    ...(input.kind === 'dockerfile' ? input.solve.localDirs : {}),
    ...parseLocalDirs(opts.local, io.cwd),
  };

  const display = createDisplay(opts.quiet ? 'quiet' : opts.progress, io.stderr);
  const { bkt, solver, root } = await openBuilder(opts, project);
  const client = createHostClient({
    localDirs,
    cwd: io.cwd,
    storeRoot: root,
    // Registry credentials as docker's: $DOCKER_CONFIG/config.json or ~/.docker/config.json, credential helpers.
    credentials: forBuildClient(dockerConfigCredentials()),
    ...(input.kind === 'dockerfile' ? { secrets: input.solve.secrets, ssh: input.solve.ssh } : {}),
  });
  let response: SolveResponse;
  try {
    response = await solver.solve({
      ...(input.kind === 'llb'
        ? { definition: input.definition }
        : {
            frontend: input.solve.frontend,
            frontendAttrs: input.solve.frontendAttrs,
            entitlements: input.solve.entitlements,
          }),
      exporters: outputs.map(({ type, ...attrs }) => ({ type, attrs })),
      client,
      noCache: !opts.cache,
      signal,
      onProgress: (event) => display.write(event),
    });
  } catch (err) {
    display.close();
    if (!signal.aborted && reportFailedSteps(display, io.stderr)) throw condensed(err);
    throw err;
  } finally {
    await solver.close();
    await bkt.close();
  }
  display.close();

  const { stats } = response;
  const loaded = load ? await loadIntoDockerEngine(load.engine, load.file) : [];
  if (!opts.quiet) {
    io.stderr.write(`solver time: ${(stats.solverMs / 1000).toFixed(3)}s (${stats.vertices} steps, ${stats.cached} cached)\n`);
    for (const line of imageSummary(outputs, response.exporterResponse)) io.stderr.write(`${terminalSafe(line)}\n`);
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

function pickTarget(project: Project, name: string): BuildTarget {
  const targets = project.config.targets ?? {};
  const target = targets[name];
  if (!target) {
    const known = Object.keys(targets);
    throw new BktError(
      'NOT_FOUND',
      `no target "${name}" in the config of ${project.dir} (targets: ${known.length ? known.join(', ') : 'none'})`,
      { attribute: 'target' },
    );
  }
  return target;
}

/** The marshalled `pb.Definition` of a target: its `build` state, definition or function returning either. */
export async function marshalTarget(target: BuildTarget, name: string): Promise<Uint8Array> {
  let built: unknown = target.build;
  try {
    if (typeof built === 'function') built = await (built as () => unknown)();
    if (built !== null && typeof built === 'object' && typeof (built as { marshal?: unknown }).marshal === 'function') {
      built = await (built as { marshal(): unknown }).marshal();
    }
  } catch (err) {
    if (err instanceof BktError) throw err;
    throw new BktError('CONFIG', `target "${name}": building its LLB failed: ${(err as Error)?.message ?? err}`, {}, { cause: err });
  }
  if (built instanceof Uint8Array) return built;
  if (built !== null && typeof built === 'object' && Array.isArray((built as { def?: unknown }).def)) {
    return pb.Definition.encode(pb.Definition.fromPartial(built as pb.Definition)).finish();
  }
  throw new BktError(
    'CONFIG',
    `target "${name}": "build" must be an LLB state (from @bkt/llb), a pb.Definition or its bytes, or a function returning one`,
    { attribute: 'build' },
  );
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

/**
 * For each failed step: its name and the last lines of its output, as buildx
 * prints them. Returns whether a step with output was reported.
 */
function reportFailedSteps(display: ProgressDisplay, out: Output): boolean {
  let reported = false;
  for (const v of display.trace.failed()) {
    if (display.trace.lastLines(v, 1).length === 0) continue;
    reported = true;
    const lines = display.trace.lastLines(v, 10);
    out.write('------\n');
    out.write(` > ${terminalSafe(v.name)}:\n`);
    for (const l of lines) out.write(`${terminalSafe(l)}\n`);
    out.write('------\n');
  }
  return reported;
}

/** The error without the step output its message may repeat (already shown above it): first line and op digest. */
function condensed(err: unknown): unknown {
  if (!(err instanceof BktError) || !err.message.includes('\n')) return err;
  const [first] = err.message.split('\n');
  const op = /\(op sha256:[0-9a-f]{64}\)$/.exec(err.message);
  const message = op && !first!.includes(op[0]) ? `${first} ${op[0]}` : first!;
  return new BktError(err.code, message, err.details, { cause: err });
}
