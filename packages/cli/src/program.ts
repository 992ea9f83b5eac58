import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { BktError, isBktError } from '@bkt/core';
// The commands (and the solver, workers and frontends behind them) are imported when one runs,
// so `--version`, `--help` and usage errors start in a few tens of milliseconds.
import type { BuildOptions, Io } from './commands/build.js';
import type { DuOptions, PruneOptions } from './commands/du.js';
import type { HistoryInspectOptions, HistoryListOptions, HistoryLogsOptions, HistoryUpdateOptions } from './commands/history.js';
import type { ProjectOptions } from './project.js';
import { BUILD_OPTIONS, DAEMON_OPTIONS, PROJECT_OPTIONS, addOptions, parseBuildArgv } from './build-argv.js';
import type { ImageSaveOptions, ImagesOptions } from './commands/images.js';
import { userMessage } from './progress/report.js';
import { terminalSafe } from './progress/terminal-safe.js';

export type { Io } from './commands/build.js';

const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** `bkt build`, once its command line is parsed (by `parseBuildArgv` or commander). */
async function runBuild(
  args: string[],
  opts: Omit<BuildOptions, 'noCacheFilter'> & { cacheFilter: string[] },
  io: Io,
  signal: AbortSignal,
  buildExtra: Partial<BuildOptions>,
): Promise<number> {
  // commander reads `--no-cache-filter` as the negation of `cache-filter`: its values land in `cacheFilter`.
  const { cacheFilter, ...rest } = opts;
  const { buildCommand } = await import('./commands/build.js');
  return buildCommand(args, { ...rest, noCacheFilter: cacheFilter, ...buildExtra }, io, signal);
}

/**
 * Runs the CLI with `argv` (without `node` and the script) and returns the
 * exit code: 0 success, 1 error, 130 / 143 when `signal` was aborted by
 * SIGINT / SIGTERM (the abort reason carries the code).
 */
export async function main(argv: string[], io: Io, signal: AbortSignal = new AbortController().signal, buildExtra: Partial<BuildOptions> = {}): Promise<number> {
  try {
    // A plain `bkt build …` runs without loading commander (build-argv.ts); the rest is commander's.
    const build = parseBuildArgv(argv);
    if (build) return await runBuild(build.args, build.opts as Parameters<typeof runBuild>[1], io, signal, buildExtra);
    return await runProgram(argv, io, signal, buildExtra);
  } catch (err) {
    const debug = !!(io.env ?? process.env).BKT_DEBUG;
    if (signal.aborted) {
      // Stopped because stdout or stderr was closed (`bkt du | head`): nothing to tell, no one to tell it to.
      if (exitCodeOf(signal) === 0) return 0;
      io.stderr.write(`bkt: ${describeError(signal.reason ?? err, debug)}\n`);
      return exitCodeOf(signal);
    }
    io.stderr.write(`error: ${describeError(err, debug)}\n`);
    if (debug && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
    return 1;
  }
}

/** The CLI through commander: every command, help and usage errors (printed by commander). */
async function runProgram(argv: string[], io: Io, signal: AbortSignal, buildExtra: Partial<BuildOptions>): Promise<number> {
  const { Command, CommanderError, Option } = await import('commander');
  const withProjectOptions = (cmd: Command) => addOptions(cmd, PROJECT_OPTIONS, Option);
  const withDaemonOptions = (cmd: Command) => addOptions(cmd, DAEMON_OPTIONS, Option);
  let exitCode = 0;
  const program = new Command('bkt')
    .enablePositionalOptions()
    .description('bkt: build container images and file trees from an LLB graph, with a shared cache')
    .version(VERSION, '-v, --version', 'print the version')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .showHelpAfterError('(run with --help for usage)');

  addOptions(withDaemonOptions(withProjectOptions(
    program
      .command('build')
      .description(
        'build a Dockerfile (`bkt build -f Dockerfile CONTEXT`, as docker buildx build), a target of bkt.config.ts (default: "default"), or a marshalled LLB definition with --llb',
      )
      .argument('[target|context]', 'config targets, several built at once (`bkt build test image`), or the build context of a Dockerfile build (`-` = a Dockerfile on stdin, no context)')
      // Several targets: the arguments past the first arrive in `command.args`.
      .allowExcessArguments(),
  )), BUILD_OPTIONS, Option)
    .action(async (_first: string | undefined, opts: Parameters<typeof runBuild>[1], command: Command) => {
      exitCode = await runBuild(command.args, opts, io, signal, buildExtra);
    });

  program
    .command('debug')
    .description("run a build and, when a RUN step fails, open a shell in that step's container as the step left it: its root and writable mounts, cwd, env and user (as docker buildx debug); leaving the shell releases it")
    .usage('[--on error|always] [--invoke COMMAND] build [build flags] CONTEXT')
    .addOption(new Option('--on <when>', 'error: a shell only in a failed step; always: in the result of a successful build too').choices(['error', 'always']).default('error'))
    .option('--invoke <command>', 'what to run instead of /bin/sh (a command line, or KEY=VALUE,… as bkt build --invoke)')
    .argument('<command>', 'the command to debug: build')
    .argument('[args...]', 'its flags and arguments')
    .passThroughOptions()
    .allowUnknownOption()
    .action(async (command: string, args: string[], opts: { on: string; invoke?: string }) => {
      if (command !== 'build') throw new BktError('INVALID_ARGUMENT', `bkt debug ${command}: only build can be debugged (bkt debug build …)`, { attribute: 'command' });
      exitCode = await main(['build', ...args], io, signal, { debugOn: opts.on, ...(opts.invoke !== undefined ? { invoke: opts.invoke } : {}) });
    });

  withProjectOptions(program.command('images').description('list the images of the local image store (built with -t NAME, or --output type=image)'))
    .option('-q, --quiet', 'print the names only')
    .action(async (opts: ImagesOptions) => {
      const { imagesCommand } = await import('./commands/images.js');
      exitCode = await imagesCommand(opts, io.stdout, io.cwd);
    });

  const image = program.command('image').description('manage the local image store: ls, rm, save');
  withProjectOptions(image.command('ls').description('list the stored images (as bkt images)'))
    .option('-q, --quiet', 'print the names only')
    .action(async (opts: ImagesOptions) => {
      const { imagesCommand } = await import('./commands/images.js');
      exitCode = await imagesCommand(opts, io.stdout, io.cwd);
    });
  withProjectOptions(image.command('rm').description('remove stored images by name; a later bkt prune reclaims their blobs'))
    .argument('<name...>', 'image names (app, app:1, reg.example/app:1)')
    .action(async (names: string[], opts: ProjectOptions) => {
      const { imageRmCommand } = await import('./commands/images.js');
      exitCode = await imageRmCommand(names, opts, io);
    });
  withProjectOptions(image.command('save').description('write a stored image as a tar: a docker archive (docker load, skopeo docker-archive:) or an OCI layout'))
    .argument('<name>', 'the image name')
    .option('-o, --output <file>', 'the tar file to write ("-" = stdout)')
    .addOption(new Option('--format <format>', 'docker (one platform) or oci').default('docker'))
    .action(async (name: string, opts: ImageSaveOptions) => {
      const { imageSaveCommand } = await import('./commands/images.js');
      exitCode = await imageSaveCommand(name, opts, io);
    });

  const cache = program.command('cache').description('build caches exported with --cache-to: inspect');
  cache
    .command('inspect')
    .description('list the records of a cache: a registry ref (BuildKit\'s or bkt\'s cache, or an image with an inline cache), or type=local,src=DIR[,tag=T]')
    .argument('<ref>', 'REF, type=registry,ref=REF[,registry.insecure=true] or type=local,src=DIR[,tag=T]')
    .option('--format <format>', 'text or json', 'text')
    .option('--insecure', 'plain HTTP or a self-signed certificate for the registry')
    .action(async (ref: string, opts: { format: string; insecure?: boolean }) => {
      const { cacheInspectCommand } = await import('./commands/cache.js');
      exitCode = await cacheInspectCommand(ref, opts, io.stdout, io.cwd, signal);
    });

  const history = program.command('history').description('the builds the store recorded (as docker buildx history): ls, inspect, logs, rm, pin, unpin');
  withDaemonOptions(withProjectOptions(history.command('ls').description('list the recorded builds, newest first')))
    .option('--format <format>', 'table or json (one object per line)', 'table')
    .action(async (opts: HistoryListOptions) => {
      const { historyListCommand } = await import('./commands/history.js');
      exitCode = await historyListCommand(opts, io.stdout, io.cwd);
    });
  withDaemonOptions(withProjectOptions(history.command('explain').description('why each step of a build that ran missed the cache, against the previous build of the same target')))
    .argument('[ref]', 'a build ref or a unique prefix of one, latest (the default) or ^N (the Nth before the latest)')
    .option('--format <format>', 'text or json', 'text')
    .action(async (ref: string | undefined, opts) => {
      const { historyExplainCommand } = await import('./commands/history-explain.js');
      exitCode = await historyExplainCommand(ref, opts, io.stdout, io.cwd);
    });
  withDaemonOptions(withProjectOptions(history.command('inspect').description("show a build's record and its steps")))
    .argument('[ref]', 'a build ref or a unique prefix of one, latest (the default) or ^N (the Nth before the latest)')
    .option('--format <format>', 'pretty or json', 'pretty')
    .action(async (ref: string | undefined, opts: HistoryInspectOptions) => {
      const { historyInspectCommand } = await import('./commands/history.js');
      exitCode = await historyInspectCommand(ref, opts, io.stdout, io.cwd);
    });
  withDaemonOptions(withProjectOptions(history.command('logs').description("print a build's logs as --progress plain did, every step's output in full with --step")))
    .argument('[ref]', 'a build ref or a unique prefix of one, latest (the default) or ^N (the Nth before the latest)')
    .option('--step <step>', "only this step, all of its output: its number (as inspect lists them) or digest")
    .option('--raw', "with --step: the step's output exactly as written, stdout on stdout and stderr on stderr")
    .action(async (ref: string | undefined, opts: HistoryLogsOptions) => {
      const { historyLogsCommand } = await import('./commands/history.js');
      exitCode = await historyLogsCommand(ref, opts, io);
    });
  withDaemonOptions(withProjectOptions(history.command('rm').description('remove builds from the history, with their logs (as docker buildx history rm)')))
    .argument('<ref...>', 'build refs or unique prefixes of them, latest or ^N')
    .action(async (refs: string[], opts: HistoryUpdateOptions) => {
      const { historyRmCommand } = await import('./commands/history.js');
      exitCode = await historyRmCommand(refs, opts, io.stdout, io.cwd);
    });
  for (const [name, pinned, what] of [['pin', true, 'pin a build: no history limit or prune removes it or its logs'], ['unpin', false, 'unpin a build']] as const) {
    withDaemonOptions(withProjectOptions(history.command(name).description(what)))
      .argument('<ref>', 'a build ref or a unique prefix of one, latest or ^N')
      .action(async (ref: string, opts: HistoryUpdateOptions) => {
        const { historyPinCommand } = await import('./commands/history.js');
        exitCode = await historyPinCommand(ref, pinned, opts, io.stdout, io.cwd);
      });
  }

  withDaemonOptions(withProjectOptions(program.command('du').description('show the disk usage of the store')))
    .option('--verbose', 'print every field of each record')
    .action(async (opts: DuOptions) => {
      const { duCommand } = await import('./commands/du.js');
      exitCode = await duCommand(opts, io.stdout, io.cwd);
    });

  withDaemonOptions(withProjectOptions(program.command('prune').description('remove unused records from the store')))
    .option('--all', 'also remove internal and frontend records (everything not in use)')
    .option('--keep-duration <duration>', 'keep records used within this duration (e.g. 24h, 30m)')
    .option('--keep-storage <bytes>', 'keep at most this much storage (e.g. 10GB, 512MB)')
    .option('--filter <filter>', 'remove only records matching KEY=VALUE, KEY!=VALUE or KEY~=REGEXP (type, id, description, mutable, shared, private, parents; until=DURATION); repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .option('--verbose', 'print every field of each removed record')
    .action(async (opts: PruneOptions) => {
      const { pruneCommand } = await import('./commands/du.js');
      exitCode = await pruneCommand(opts, io.stdout, io.cwd);
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (err) {
    // --help and --version exit 0; usage errors were already printed.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 1;
    throw err;
  }
}

/** An error's message as printed: terminal-safe (it may quote Dockerfile text or build output), op references only when debugging. */
function describeError(err: unknown, debug: boolean): string {
  const message = isBktError(err) || err instanceof Error ? err.message : String(err);
  return terminalSafe(userMessage(message, debug));
}

/** The exit code of an interruption: the abort reason's `exitCode` (130 for SIGINT, 143 for SIGTERM). */
function exitCodeOf(signal: AbortSignal): number {
  const reason = signal.reason as { details?: { exitCode?: unknown } } | undefined;
  const code = reason?.details?.exitCode;
  return typeof code === 'number' ? code : 130;
}

/**
 * The abort reason when the reader of stdout or stderr has gone (EPIPE, as
 * in `bkt du | head -1`): the running work stops as on an interruption, and
 * the CLI exits 0 without a word, as most CLIs do.
 */
export function closedOutput(stream: 'stdout' | 'stderr'): BktError {
  return new BktError('CANCELLED', `${stream} was closed`, { exitCode: 0 });
}

/** The abort reason for a signal: a `CANCELLED` error carrying the conventional exit code. */
export function interruption(sig: NodeJS.Signals): BktError {
  const exitCode = sig === 'SIGTERM' ? 143 : 130;
  return new BktError('CANCELLED', `build interrupted by ${sig}`, { exitCode });
}
