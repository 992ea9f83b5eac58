/**
 * Where a daemon is, as buildctl takes it: `--addr` (else `BKT_HOST`, as
 * buildctl's `BUILDKIT_HOST`) is `unix:///PATH` or `tcp://HOST:PORT`; a TCP
 * daemon is reached only with mutual TLS (`--tlscacert`, `--tlscert`,
 * `--tlskey`), as bktd serves TCP only that way.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { BktError } from '@bkt/core';

/** The daemon flags of the commands that may run against bktd. */
export interface DaemonFlags {
  /** `--addr` (commander fills it from `BKT_HOST` when the flag is absent). */
  addr?: string;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
}

export interface DaemonAddress {
  /** The address as given (`unix:///run/bkt/bktd.sock`, `tcp://host:1234`). */
  address: string;
  /** The gRPC target (`unix:///…`, `host:1234`). */
  target: string;
  /** For a TCP daemon: the CA that signed its certificate, and this client's key and certificate (PEM). */
  tls?: { ca: Buffer; key: Buffer; cert: Buffer };
}

const TLS_FLAGS = ['tlscacert', 'tlscert', 'tlskey'] as const;

/** The daemon the flags name, or undefined when they name none (the build runs in this process). */
export function daemonAddress(flags: DaemonFlags, cwd: string): DaemonAddress | undefined {
  const address = flags.addr?.trim();
  const tls = TLS_FLAGS.filter((f) => flags[f] !== undefined);
  if (!address) {
    if (tls.length > 0) throw new BktError('INVALID_ARGUMENT', `--${tls[0]}: TLS files are for a daemon at a tcp:// address; give --addr (or BKT_HOST)`, { attribute: tls[0] });
    return undefined;
  }
  const bad = (why: string) => new BktError('INVALID_ARGUMENT', `--addr ${address}: ${why}`, { attribute: 'addr' });
  if (address.startsWith('unix://')) {
    const path = address.slice('unix://'.length);
    if (!isAbsolute(path)) throw bad('the socket path must be absolute (unix:///run/bkt/bktd.sock)');
    if (tls.length > 0) throw bad(`--${tls[0]} is for tcp:// addresses; a unix socket takes no TLS`);
    return { address, target: `unix://${path}` };
  }
  if (address.startsWith('tcp://')) {
    const hostPort = address.slice('tcp://'.length).replace(/\/$/, '');
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(hostPort)) throw bad('want tcp://HOST:PORT');
    const missing = TLS_FLAGS.filter((f) => flags[f] === undefined);
    if (missing.length > 0) {
      throw bad(`bktd serves TCP only with mutual TLS; missing ${missing.map((f) => `--${f}`).join(', ')}`);
    }
    const read = (flag: (typeof TLS_FLAGS)[number]) => {
      const file = resolve(cwd, flags[flag]!);
      try {
        return readFileSync(file);
      } catch (err) {
        throw new BktError('NOT_FOUND', `--${flag} ${flags[flag]}: ${(err as Error).message}`, { attribute: flag, path: file });
      }
    };
    return { address, target: hostPort, tls: { ca: read('tlscacert'), key: read('tlskey'), cert: read('tlscert') } };
  }
  throw bad('want unix:///PATH or tcp://HOST:PORT');
}
