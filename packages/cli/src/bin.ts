import { readFileSync } from 'node:fs';

/**
 * The `bkt` executable. SIGINT / SIGTERM abort the running solve (which
 * cleans up its mounts and temporary snapshots) and exit 130 / 143; a second
 * signal, or a solve that does not stop within 10 s, exits at once. When the
 * reader of stdout or stderr goes away (EPIPE: `bkt du | head -1`), whatever
 * runs stops the same way and the CLI exits 0 quietly.
 *
 * `bkt --version` (alone) prints the version without loading the CLI: start-up
 * is all it costs. Everything else loads the program, which loads each
 * command's modules when it runs.
 */
const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  process.stdout.write(`${version}\n`);
} else {
  // The program through the bundle's scripts and V8's code cache (code-cache.ts); from sources, or without them, as a module.
  const { loadCachedProgram } = await import('./code-cache.js');
  const { closedOutput, interruption, main } = ((await loadCachedProgram(import.meta.url)) ?? (await import('./program.js'))) as typeof import('./program.js');
  const controller = new AbortController();
  let forcedCode: number | undefined;
  for (const [name, stream] of [['stdout', process.stdout], ['stderr', process.stderr]] as const) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      if (!controller.signal.aborted) controller.abort(closedOutput(name));
    });
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      const reason = interruption(sig);
      const code = reason.details.exitCode as number;
      if (forcedCode !== undefined) process.exit(forcedCode);
      forcedCode = code;
      controller.abort(reason);
      setTimeout(() => process.exit(code), 10_000).unref();
    });
  }

  const code = await main(argv, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, cwd: process.cwd() }, controller.signal);
  process.exitCode = forcedCode ?? code;
}
