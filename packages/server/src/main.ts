/**
 * `bktd`'s command line, with buildkitd's flags where they overlap, so
 * scripts written for buildkitd work: `--addr` (repeatable), `--root`,
 * `--config`, `--debug`, `--group`, `--tlscert`, `--tlskey`, `--tlscacert`,
 * `--allow-insecure-entitlement`; bkt's own `--controller`. Flags override
 * the config file.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { BktError, isBktError } from '@bkt/core';
import { ENTITLEMENTS, findDaemonConfig, loadDaemonConfig, type DaemonConfig } from './config.js';
import { startDaemon, type Daemon, type DaemonOptions } from './daemon.js';
import { DEFAULT_ADDRESS } from './listen.js';

const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export const DEFAULT_ROOT = '/var/lib/bkt';

interface Flags {
  addr: string[];
  root?: string;
  config?: string;
  debug?: boolean;
  group?: string;
  tlscert?: string;
  tlskey?: string;
  tlscacert?: string;
  allowInsecureEntitlement: string[];
  controller?: boolean;
}

export interface MainIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

/**
 * Parses `argv` and starts the daemon; resolves with it, or with an exit
 * code when nothing is to be served (`--help`, `--version`, a bad flag or
 * config: the error is written to stderr).
 */
export async function bktdMain(argv: string[], io: MainIo, extra: Pick<DaemonOptions, 'sessions'> = {}): Promise<Daemon | number> {
  const collect = (value: string, previous: string[]) => [...previous, value];
  const program = new Command('bktd')
    .description('bktd: serves BuildKit\'s Control API (moby.buildkit.v1.Control) over bkt\'s solver')
    .version(VERSION, '-v, --version', 'print the version')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .option('--addr <address>', `listening address: unix:///PATH or tcp://HOST:PORT (repeatable; default ${DEFAULT_ADDRESS})`, collect, [])
    .option('--root <dir>', `the store root (default: the config's root, else ${DEFAULT_ROOT})`)
    .option('--config <file>', 'the daemon config (default: /etc/bkt/bktd.config.{ts,mts,js,mjs,json} if present)')
    .option('--debug', 'log each request and its failure')
    .option('--group <group>', 'the group of the unix sockets (name or gid)')
    .option('--tlscert <file>', 'the server certificate (TCP addresses)')
    .option('--tlskey <file>', 'the server key (TCP addresses)')
    .option('--tlscacert <file>', 'the CA that signed the client certificates (TCP addresses; mutual TLS)')
    .option('--allow-insecure-entitlement <entitlement>', `permit builds to ask for an entitlement: ${ENTITLEMENTS.join(', ')} (repeatable)`, collect, [])
    .option('--controller', "serve buildx's Controller (bkt debug build, bkt build --invoke) on the unix sockets; it grants whoever can reach a socket the daemon's access to host paths")
    .allowExcessArguments(false);
  let flags: Flags;
  try {
    program.parse(argv, { from: 'user' });
    flags = program.opts<Flags>();
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    throw err;
  }
  try {
    for (const e of flags.allowInsecureEntitlement) {
      if (!ENTITLEMENTS.includes(e)) throw new BktError('INVALID_ARGUMENT', `--allow-insecure-entitlement ${e}: unknown entitlement (known: ${ENTITLEMENTS.join(', ')})`);
    }
    const file = flags.config ?? findDaemonConfig();
    const { config, dir } = file ? await loadDaemonConfig(file) : { config: {} as DaemonConfig, dir: process.cwd() };
    const root = flags.root ?? config.root ?? DEFAULT_ROOT;
    const daemon = await startDaemon({
      root,
      addresses: flags.addr.length > 0 ? flags.addr : (config.addr ?? [DEFAULT_ADDRESS]),
      group: flags.group ?? (config.group !== undefined ? String(config.group) : undefined),
      tls: { cert: flags.tlscert ?? config.tls?.cert, key: flags.tlskey ?? config.tls?.key, ca: flags.tlscacert ?? config.tls?.ca },
      config: { ...config, ...(flags.controller ? { controller: true } : {}), entitlements: [...new Set([...(config.entitlements ?? []), ...flags.allowInsecureEntitlement])] },
      configDir: dir,
      debug: flags.debug,
      log: (line) => io.stderr.write(`bktd: ${line}\n`),
      ...extra,
    });
    io.stderr.write(`bktd: serving store ${resolve(root)}\n`);
    for (const a of daemon.addresses) io.stderr.write(`bktd: listening on ${a}\n`);
    return daemon;
  } catch (err) {
    io.stderr.write(`bktd: ${isBktError(err) ? err.message : ((err as Error).stack ?? String(err))}\n`);
    return 1;
  }
}
