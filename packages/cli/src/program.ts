import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { BktError, isBktError } from '@bkt/core';
// The commands (and the solver, workers and frontends behind them) are imported when one runs,
// so `--version`, `--help` and usage errors start in a few tens of milliseconds.
import type { BuildOptions, Io } from './commands/build.js';
import type { DuOptions, PruneOptions } from './commands/du.js';
import type { HistoryInspectOptions, HistoryListOptions, HistoryLogsOptions, HistoryUpdateOptions } from './commands/history.js';
import type { ProjectOptions } from './project.js';
import type { ImageSaveOptions, ImagesOptions } from './commands/images.js';
import { onePlatform } from './platform-flag.js';
import { userMessage } from './progress/report.js';
import { terminalSafe } from './progress/terminal-safe.js';

export type { Io } from './commands/build.js';

const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const collect = (value: string, previous: string[]) => [...previous, value];

/** Adds the options every command takes: project dir, config file, store root. */
function withProjectOptions(cmd: Command): Command {
  return cmd
    .option('-C, --dir <dir>', 'project directory (where bkt.config.* is)', undefined)
    .option('--config <file>', 'config file to load instead of <dir>/bkt.config.{ts,mts,js,mjs,json}')
    .option('--root <dir>', 'store root (default: /var/lib/bkt as root, else $XDG_DATA_HOME/bkt)');
}

/** Adds the options of commands that may run against bktd: its address (`--addr`, else `BKT_HOST`) and the TLS files of a tcp:// one. */
function withDaemonOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--addr <address>', 'run against bktd at unix:///PATH or tcp://HOST:PORT (default: none, the build runs in this process)').env('BKT_HOST'))
    .option('--tlscacert <file>', 'tcp:// daemon: the CA certificate that signed the daemon\'s certificate')
    .option('--tlscert <file>', 'tcp:// daemon: this client\'s certificate')
    .option('--tlskey <file>', 'tcp:// daemon: this client\'s private key');
}

/**
 * Runs the CLI with `argv` (without `node` and the script) and returns the
 * exit code: 0 success, 1 error, 130 / 143 when `signal` was aborted by
 * SIGINT / SIGTERM (the abort reason carries the code).
 */
export async function main(argv: string[], io: Io, signal: AbortSignal = new AbortController().signal, buildExtra: Partial<BuildOptions> = {}): Promise<number> {
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

  withDaemonOptions(withProjectOptions(
    program
      .command('build')
      .description(
        'build a Dockerfile (`bkt build -f Dockerfile CONTEXT`, as docker buildx build), a target of bkt.config.ts (default: "default"), or a marshalled LLB definition with --llb',
      )
      .argument('[target|context]', 'config targets, several built at once (`bkt build test image`), or the build context of a Dockerfile build (`-` = a Dockerfile on stdin, no context)')
      // Several targets: the arguments past the first arrive in `command.args`.
      .allowExcessArguments(),
  ))
    .option('-o, --output <spec>', 'output: type=local,dest=DIR | type=tar,dest=FILE|- | type=image,name=N[,push=true] | type=registry | type=oci|docker,dest=FILE (repeatable; CSV as buildx)', collect, [])
    .addOption(new Option('--progress <mode>', 'progress output (default: $BUILDKIT_PROGRESS, else auto)').choices(['auto', 'tty', 'plain', 'rawjson', 'quiet']))
    .option('--call <name>', 'Dockerfile build: print check (build-check warnings; exit 1 when there are any), outline (build args, secrets, ssh of the target) or targets (the stages) instead of building; NAME[,format=json]')
    .option('--check', 'Dockerfile build: --call check')
    .option('--no-cache', 'do not use cached results (new results are still recorded)')
    .option('--llb <file>', 'solve a marshalled pb.Definition from FILE, or stdin with "-" (as buildctl build)')
    .option('--local <name=dir>', 'a local directory for local://NAME sources (repeatable)', collect, [])
    .option('--cache-to <spec>', 'export the build cache: type=registry,ref=REF[,mode=min|max] | type=local,dest=DIR | type=inline (repeatable; CSV as buildx)', collect, [])
    .option('--explain', 'after the build, say why each step that ran missed the cache: the changed context file, build arg or env, base image digest, parent step (against the previous build of the same target)')
    .option('--cache-from <spec>', 'import a build cache: type=registry,ref=REF | type=local,src=DIR | REF (repeatable; several are merged)', collect, [])
    .option('--metadata-file <file>', 'write the build result metadata (exporter response) as JSON')
    .option('-f, --file <file>', 'Dockerfile build: the Dockerfile (default: CONTEXT/Dockerfile; "-" = stdin)')
    .option('--target <stage>', 'Dockerfile build: the stage to build (default: the last)')
    .option('--build-arg <key=value>', 'Dockerfile build: a build arg; KEY alone takes its value from the environment (repeatable)', collect, [])
    .option('--build-context <name=value>', 'Dockerfile build: a named context: a directory, docker-image://REF, oci-layout://…, a git or https URL (repeatable)', collect, [])
    .option('--secret <spec>', 'Dockerfile build: a secret for RUN --mount=type=secret: id=ID[,src=FILE|,env=VAR][,type=file|env] (repeatable)', collect, [])
    .option('--ssh <spec>', 'Dockerfile build: an ssh-agent for RUN --mount=type=ssh: default | ID=SOCKET | ID=KEY[,KEY] (repeatable)', collect, [])
    .option('-t, --tag <name>', 'the image name (repeatable); without --output, export type=image', collect, [])
    .option('--push', 'push the image (shorthand for --output type=registry)')
    .option('--platform <platform>', 'the target platform (os/arch[/variant]; one: several in one build are not supported yet)', onePlatform)
    .option('--list', 'list the targets of the config, with their descriptions')
    .option('--label <key=value>', 'Dockerfile build: a label of the image (repeatable)', collect, [])
    .option('--no-cache-filter <stage>', 'Dockerfile build: do not use the cache for these stages (repeatable, or comma-separated)', collect, [])
    .option('--add-host <host:ip>', 'Dockerfile build: an /etc/hosts entry in RUN steps (repeatable)', collect, [])
    .option('--allow <entitlement>', 'grant the build network.host (RUN --network=host) or security.insecure (RUN --security=insecure) (repeatable)', collect, [])
    .option('--network <mode>', 'Dockerfile build: the network of RUN steps: default, none or host')
    .option('--shm-size <size>', 'Dockerfile build: the size of /dev/shm in RUN steps (e.g. 64m)')
    .option('--ulimit <name=soft:hard>', 'Dockerfile build: a ulimit of RUN steps (repeatable)', collect, [])
    .option('--pull', 'Dockerfile build: always look up base images in their registry (image-resolve-mode=pull)')
    .option('--frontend <name>', 'Dockerfile build: the frontend (default dockerfile.v0; gateway.v0 runs the frontend image --opt source=IMAGE)')
    .option('--opt <key=value>', 'Dockerfile build: a frontend attribute, as buildctl --opt (e.g. source=IMAGE, build-arg:K=V) (repeatable)', collect, [])
    .option('--iidfile <file>', 'write the image id (config digest) to FILE')
    .option('--load', 'load the image into the local Docker engine (DOCKER_HOST, else /var/run/docker.sock), as docker buildx build --load')
    .option('-q, --quiet', 'no progress output; print the image id (config digest) on stdout')
    .option('--annotation <[type:]key=value>', 'an annotation of the image: KEY=VALUE (manifest) or TYPE[,TYPE][PLATFORM]:KEY=VALUE, TYPE manifest, manifest-descriptor, index or index-descriptor (repeatable)', collect, [])
    .option('--provenance [value]', 'attestations are not supported yet: only --provenance=false is accepted')
    .option('--sbom [value]', 'attestations are not supported yet: only --sbom=false is accepted')
    .option('--attest <spec>', 'attestations are not supported yet (refused)', collect, [])
    .option('--invoke <command>', 'run COMMAND in the build result attached to this terminal once the build succeeded (e.g. sh); on-error: a shell in the failed step instead; or KEY=VALUE,… (args, entrypoint, env, user, cwd, tty, on=error|always), as buildx')
    .action(async (_first: string | undefined, opts: Omit<BuildOptions, 'noCacheFilter'> & { cacheFilter: string[] }, command: Command) => {
      const args = command.args;
      // commander reads `--no-cache-filter` as the negation of `cache-filter`: its values land in `cacheFilter`.
      const { cacheFilter, ...rest } = opts;
      const { buildCommand } = await import('./commands/build.js');
      exitCode = await buildCommand(args, { ...rest, noCacheFilter: cacheFilter, ...buildExtra }, io, signal);
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
    if (err instanceof CommanderError) {
      // --help and --version exit 0; usage errors were already printed.
      return err.exitCode === 0 ? 0 : 1;
    }
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
