import { Command, Option } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BUILD_OPTIONS, DAEMON_OPTIONS, PROJECT_OPTIONS, addOptions, parseBuildArgv } from './build-argv.js';

/** `argv` as commander parses it with `bkt build`'s declarations (as program.ts makes them): its operands and options, or the error it throws. */
function commanderParse(argv: string[]): { args: string[]; opts: Record<string, unknown> } | { error: unknown } {
  let parsed: { args: string[]; opts: Record<string, unknown> } | undefined;
  const program = new Command('bkt')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
  const build = program.command('build').argument('[target|context]').allowExcessArguments();
  addOptions(addOptions(addOptions(build, PROJECT_OPTIONS, Option), DAEMON_OPTIONS, Option), BUILD_OPTIONS, Option).action(
    (_first: unknown, opts: Record<string, unknown>, command: Command) => {
      parsed = { args: command.args, opts: { ...opts } };
    },
  );
  try {
    program.parse(argv, { from: 'user' });
  } catch (error) {
    return { error };
  }
  return parsed ?? { error: 'no action' };
}

/** Command lines the parser must read as commander does. */
const READ = [
  ['build'],
  ['build', '--root', '/var/lib/r', '-C', 'examples/hello', '-q'],
  ['build', '--root=/r', 'a', 'b', '--progress', 'plain'],
  ['build', '-o', 'type=local,dest=out', '-o', 'type=tar,dest=-', '--output=type=oci,dest=x.tar'],
  ['build', '-o', '-'],
  // commander takes the next argument as a required value, whatever it looks like.
  ['build', '--output', '--weird', '-f', '-', '-'],
  ['build', '--no-cache', '--no-cache-filter', 'a', '--no-cache-filter=b'],
  ['build', '--platform', 'linux/amd64', '--progress=quiet', '--root='],
  ['build', '.', '--target', 'x', '--build-arg', 'A=1', '--build-arg', 'B', '--check'],
  [
    'build', '-t', 'a', '--tag', 'b', '--push', '--load', '--iidfile', 'f', '--metadata-file', 'm', '--annotation', 'k=v',
    '--label', 'l=1', '--add-host', 'h:1.2.3.4', '--allow', 'network.host', '--network', 'none', '--shm-size', '64m',
    '--ulimit', 'nofile=1:2', '--pull', '--frontend', 'gateway.v0', '--opt', 'source=x', '--invoke', 'sh', '--explain',
    '--list', '--llb', '-', '--local', 'a=b', '--cache-to', 'type=inline', '--cache-from', 'r', '--call', 'outline',
    '--secret', 'id=a,src=b', '--ssh', 'default', '--build-context', 'a=b', '--config', 'c.ts', '--tlscacert', 'a',
    '--tlscert', 'b', '--tlskey', 'c', '--attest', 'x', '--call', 'targets', '--addr', 'unix:///run/bktd.sock', '-q',
  ],
  // Short-option groups and glued short values.
  ['build', '-qo', 'x'],
  ['build', '-ofoo', '-qtname', '-qC', 'dir'],
  ['build', '-C=x', '-qqq'],
  // Optional values: the next argument unless it looks like an option (a negative number is a value).
  ['build', '--provenance=false', '--sbom'],
  ['build', '--provenance', 'false', 'ctx'],
  ['build', '--provenance', '-q', '--sbom', '-1'],
  ['build', '--sbom', '-', '--provenance='],
  ['build', '--addr', 'unix:///a', '--addr=unix:///b'],
];

/** Command lines left to commander: help, errors, and forms the parser does not read. */
const LEFT = [
  ['du'],
  ['--version'],
  ['bkt', 'build'],
  ['build', '--help'],
  ['build', '-h'],
  ['build', '--bogus'],
  ['build', '--progress', 'bogus'],
  ['build', '--platform', 'linux/amd64,linux/arm64'],
  ['build', '--platform', 'linux/amd64', '--platform', 'linux/arm64'],
  ['build', '--check=1'],
  ['build', '-qx'],
  ['build', '-qh'],
  ['build', '-q-'],
  ['build', '-xq'],
  ['build', '--', 'x'],
  ['build', '-q', '--', 'x'],
  ['build', '--push=1'],
  ['build', '--progress=bogus'],
  ['build', '-5'],
  ['build', '--root'],
  ['build', '--=x'],
];

describe('parseBuildArgv', () => {
  let host: string | undefined;
  beforeEach(() => {
    host = process.env.BKT_HOST;
    delete process.env.BKT_HOST;
  });
  afterEach(() => {
    if (host !== undefined) process.env.BKT_HOST = host;
  });

  it.each(READ.map((argv) => [argv.join(' ').slice(0, 60), argv]))('reads %s as commander does', (_name, argv) => {
    const ours = parseBuildArgv(argv, {});
    expect(ours).toBeDefined();
    const theirs = commanderParse(argv);
    expect(theirs).not.toHaveProperty('error');
    expect(ours).toStrictEqual(theirs);
    expect(Object.keys(ours!.opts).sort()).toEqual(Object.keys((theirs as { opts: object }).opts).sort());
  });

  it.each(LEFT.map((argv) => [argv.join(' '), argv]))('leaves %s to commander', (_name, argv) => {
    expect(parseBuildArgv(argv, {})).toBeUndefined();
  });

  it.each([
    ['unix:///run/bktd.sock', ['build', '-q'], 'unix:///run/bktd.sock'],
    ['', ['build', '-q', '-t', 'x', '.'], ''],
    ['unix:///env.sock', ['build', '--addr', 'unix:///flag.sock'], 'unix:///flag.sock'],
    ['unix:///env.sock', ['build', '--addr='], ''],
  ] as const)('reads BKT_HOST=%j for --addr as commander does: %j', (host, argv, addr) => {
    process.env.BKT_HOST = host;
    const ours = parseBuildArgv(argv);
    expect(ours).toBeDefined();
    expect(ours).toStrictEqual(commanderParse([...argv]));
    expect(ours!.opts.addr).toBe(addr);
  });

  it('declares every option of the table to commander, in order', () => {
    const build = addOptions(addOptions(addOptions(new Command('build'), PROJECT_OPTIONS, Option), DAEMON_OPTIONS, Option), BUILD_OPTIONS, Option);
    expect(build.options.map((o) => o.flags)).toEqual([...PROJECT_OPTIONS, ...DAEMON_OPTIONS, ...BUILD_OPTIONS].map((s) => s.flags));
  });
});
