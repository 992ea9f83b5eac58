/**
 * The daemon's listening addresses, as buildkitd's `--addr`:
 * `unix:///path/to.sock` (created 0660, owned by root and the `--group`;
 * a stale socket left by a dead daemon is replaced, a live one is an
 * error) and `tcp://host:port`, served only with mutual TLS: the server's
 * certificate and key, and the CA that must have signed every client's
 * certificate. A client without one is refused during the handshake.
 */
import { chmod, chown, lstat, mkdir, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { BktError } from '@bkt/core';

export const DEFAULT_ADDRESS = 'unix:///run/bkt/bktd.sock';

export type Address = { kind: 'unix'; path: string; given: string } | { kind: 'tcp'; host: string; port: number; given: string };

export interface TlsFiles {
  cert?: string;
  key?: string;
  ca?: string;
}

/** Parses one `--addr` value (INVALID_ARGUMENT naming it). */
export function parseAddress(addr: string): Address {
  const bad = (why: string) => new BktError('INVALID_ARGUMENT', `--addr ${addr}: ${why}`, { attribute: 'addr' });
  const unix = /^unix:\/\/(.+)$/.exec(addr);
  if (unix) {
    if (!unix[1].startsWith('/')) throw bad('a unix socket path must be absolute (unix:///run/bkt/bktd.sock)');
    return { kind: 'unix', path: unix[1], given: addr };
  }
  const tcp = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(addr);
  if (tcp) {
    const port = Number(tcp[2]);
    if (port > 65535) throw bad(`port ${port} is out of range`);
    return { kind: 'tcp', host: tcp[1], port, given: addr };
  }
  throw bad('want unix:///PATH or tcp://HOST:PORT');
}

/** A gid from a group name (from /etc/group) or a number. */
export async function resolveGroup(group: string): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const lines = (await readFile('/etc/group', 'utf8').catch(() => '')).split('\n');
  for (const line of lines) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined) return Number(gid);
  }
  throw new BktError('INVALID_ARGUMENT', `--group ${group}: no such group in /etc/group`, { attribute: 'group' });
}

/** The server credentials for TCP: mutual TLS, or an error naming what is missing. */
export async function tcpCredentials(addr: Address, tls: TlsFiles): Promise<grpc.ServerCredentials> {
  const missing = (['cert', 'key', 'ca'] as const).filter((k) => !tls[k]).map((k) => `--tls${k === 'ca' ? 'cacert' : k}`);
  if (missing.length > 0) {
    throw new BktError(
      'INVALID_ARGUMENT',
      `--addr ${addr.given}: bktd serves TCP only with mutual TLS; missing ${missing.join(', ')} (or tls.cert/key/ca in bktd.config.ts)`,
      { attribute: 'addr' },
    );
  }
  const read = async (k: 'cert' | 'key' | 'ca', flag: string) => {
    try {
      return await readFile(tls[k]!);
    } catch (err) {
      throw new BktError('INVALID_ARGUMENT', `${flag} ${tls[k]}: ${(err as Error).message}`, { attribute: flag.slice(2) });
    }
  };
  const [cert, key, ca] = [await read('cert', '--tlscert'), await read('key', '--tlskey'), await read('ca', '--tlscacert')];
  // checkClientCertificate: a client must present a certificate the CA signed.
  return grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true);
}

/** Whether something accepts connections on unix socket `path`. */
function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Binds `server` to `addr`; returns the address as bound (a TCP port 0
 * replaced by the port chosen).
 */
export async function bind(server: grpc.Server, addr: Address, opts: { gid?: number; tls: TlsFiles }): Promise<string> {
  if (addr.kind === 'tcp') {
    const creds = await tcpCredentials(addr, opts.tls);
    const port = await bindAsync(server, `${addr.host}:${addr.port}`, creds, addr.given);
    return `tcp://${addr.host}:${port}`;
  }
  await mkdir(dirname(addr.path), { recursive: true, mode: 0o755 });
  const existing = await lstat(addr.path).catch(() => null);
  if (existing) {
    if (!existing.isSocket()) throw new BktError('INVALID_ARGUMENT', `--addr ${addr.given}: ${addr.path} exists and is not a socket`, { attribute: 'addr' });
    if (await socketAlive(addr.path)) throw new BktError('INVALID_ARGUMENT', `--addr ${addr.given}: another process is listening on ${addr.path}`, { attribute: 'addr' });
    await rm(addr.path, { force: true });
  }
  await bindAsync(server, `unix://${addr.path}`, grpc.ServerCredentials.createInsecure(), addr.given);
  await chmod(addr.path, 0o660);
  if (opts.gid !== undefined) await chown(addr.path, 0, opts.gid);
  return addr.given;
}

function bindAsync(server: grpc.Server, target: string, creds: grpc.ServerCredentials, given: string): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(target, creds, (err, port) =>
      err ? reject(new BktError('INVALID_ARGUMENT', `--addr ${given}: cannot listen: ${err.message}`, { attribute: 'addr' })) : resolve(port),
    ),
  );
}
