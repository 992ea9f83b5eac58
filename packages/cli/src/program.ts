import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { BktError, isBktError } from '@bkt/core';
import { buildCommand, type BuildOptions, type Io } from './commands/build.js';
import { duCommand, pruneCommand, type DuOptions, type PruneOptions } from './commands/du.js';

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

/**
 * Runs the CLI with `argv` (without `node` and the script) and returns the
 * exit code: 0 success, 1 error, 130 / 143 when `signal` was aborted by
 * SIGINT / SIGTERM (the abort reason carries the code).
 */
export async function main(argv: string[], io: Io, signal: AbortSignal = new AbortController().signal): Promise<number> {
  let exitCode = 0;
  const program = new Command('bkt')
    .description('bkt: build container images and file trees from an LLB graph, with a shared cache')
    .version(VERSION, '-v, --version', 'print the version')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .showHelpAfterError('(run with --help for usage)');

  withProjectOptions(
    program
      .command('build')
      .description('build a target of bkt.config.ts (default: "default"), or a marshalled LLB definition with --llb')
      .argument('[target]', 'target name in the config'),
  )
    .option('-o, --output <spec>', 'output: type=local,dest=DIR | type=tar,dest=FILE|- (repeatable; CSV as buildx)', collect, [])
    .addOption(new Option('--progress <mode>', 'progress output').choices(['auto', 'tty', 'plain', 'rawjson', 'quiet']).default('auto'))
    .option('--no-cache', 'do not use cached results (new results are still recorded)')
    .option('--llb <file>', 'solve a marshalled pb.Definition from FILE, or stdin with "-" (as buildctl build)')
    .option('--local <name=dir>', 'a local directory for local://NAME sources (repeatable)', collect, [])
    .option('--metadata-file <file>', 'write the build result metadata (exporter response) as JSON')
    .action(async (target: string | undefined, opts: BuildOptions) => {
      exitCode = await buildCommand(target, opts, io, signal);
    });

  withProjectOptions(program.command('du').description('show the disk usage of the store'))
    .option('--verbose', 'print every field of each record')
    .action(async (opts: DuOptions) => {
      exitCode = await duCommand(opts, io.stdout, io.cwd);
    });

  withProjectOptions(program.command('prune').description('remove unused records from the store'))
    .option('--all', 'also remove records still referenced by the cache (everything not in use)')
    .option('--keep-duration <duration>', 'keep records used within this duration (e.g. 24h, 30m)')
    .option('--keep-storage <bytes>', 'keep at most this much storage (e.g. 10GB, 512MB)')
    .option('--verbose', 'print every field of each removed record')
    .action(async (opts: PruneOptions) => {
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
    if (signal.aborted) {
      io.stderr.write(`bkt: ${describeError(signal.reason ?? err)}\n`);
      return exitCodeOf(signal);
    }
    io.stderr.write(`error: ${describeError(err)}\n`);
    if (process.env.BKT_DEBUG && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
    return 1;
  }
}

function describeError(err: unknown): string {
  if (isBktError(err)) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** The exit code of an interruption: the abort reason's `exitCode` (130 for SIGINT, 143 for SIGTERM). */
function exitCodeOf(signal: AbortSignal): number {
  const reason = signal.reason as { details?: { exitCode?: unknown } } | undefined;
  const code = reason?.details?.exitCode;
  return typeof code === 'number' ? code : 130;
}

/** The abort reason for a signal: a `CANCELLED` error carrying the conventional exit code. */
export function interruption(sig: NodeJS.Signals): BktError {
  const exitCode = sig === 'SIGTERM' ? 143 : 130;
  return new BktError('CANCELLED', `build interrupted by ${sig}`, { exitCode });
}
