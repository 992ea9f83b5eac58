/**
 * bktd's transports (issue 11): TCP only with mutual TLS — a client without
 * a certificate, with one another CA signed, or in plain text is refused;
 * one with a certificate the configured CA signed is served — and a TCP
 * address without TLS files is refused at start. Unix sockets: the group
 * given by --group, a live socket not taken over.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, tempDir } from '../helpers.js';
import { bktdFails, Control, startBktd, type RunningDaemon } from './lib.js';

let work: string;

/** A CA and, signed by it, a certificate for `name` (serverAuth and clientAuth; SAN 127.0.0.1 and localhost). */
function makeCerts(dir: string, ca: string, names: string[]): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${ca}`, '-keyout', `${ca}.key`, '-out', `${ca}.pem`);
  for (const name of names) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2', '-out', `${name}.pem`, '-extfile', 'ext.cnf');
  }
}

beforeAll(async () => {
  work = await tempDir('daemon-transport');
  await writeFile(join(work, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  makeCerts(work, 'ca', ['server', 'client']);
  makeCerts(work, 'other-ca', ['stranger']);
});

afterAll(async () => {
  if (work) await removeDir(work);
});

const read = (name: string) => readFileSync(join(work, name));

describe('TCP with mutual TLS', () => {
  let daemon: RunningDaemon;
  let address: string;

  beforeAll(async () => {
    daemon = await startBktd(
      ['--addr', 'tcp://127.0.0.1:0', '--root', join(work, 'root'), '--tlscert', 'server.pem', '--tlskey', 'server.key', '--tlscacert', 'ca.pem'],
      { cwd: work },
    );
    address = daemon.addresses[0]!;
    expect(address).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
  });

  afterAll(async () => {
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  const infoWith = async (creds: grpc.ChannelCredentials) => {
    const c = new Control(address, creds);
    try {
      return await c.info();
    } finally {
      c.close();
    }
  };

  it('serves a client whose certificate the CA signed', async () => {
    const r = await infoWith(grpc.credentials.createSsl(read('ca.pem'), read('client.key'), read('client.pem')));
    expect(r.buildkitVersion?.package).toBe('@bkt/server');
  });

  it('refuses a client without a certificate, one signed by another CA, and plain text', async () => {
    await expect(infoWith(grpc.credentials.createSsl(read('ca.pem')))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    await expect(infoWith(grpc.credentials.createSsl(read('ca.pem'), read('stranger.key'), read('stranger.pem')))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    await expect(infoWith(grpc.credentials.createInsecure())).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    // …and still serves the right client afterwards.
    expect((await infoWith(grpc.credentials.createSsl(read('ca.pem'), read('client.key'), read('client.pem')))).buildkitVersion?.package).toBe('@bkt/server');
  });
});

describe('refused at start', () => {
  it('a TCP address without the TLS files, naming what is missing', async () => {
    const r = await bktdFails(['--addr', 'tcp://127.0.0.1:0', '--root', join(work, 'root-notls'), '--tlscert', 'server.pem'], work);
    expect(r.code).toBe(1);
    expect(r.output).toMatch(/--addr tcp:\/\/127\.0\.0\.1:0: bktd serves TCP only with mutual TLS; missing --tlskey, --tlscacert/);
  });

  it('a malformed address, a relative socket path, an unknown entitlement', async () => {
    expect((await bktdFails(['--addr', 'http://x', '--root', join(work, 'r')], work)).output).toMatch(/--addr http:\/\/x: want unix:\/\/\/PATH or tcp:\/\/HOST:PORT/);
    expect((await bktdFails(['--addr', 'unix://rel.sock', '--root', join(work, 'r')], work)).output).toMatch(/must be absolute/);
    expect((await bktdFails(['--allow-insecure-entitlement', 'device', '--addr', `unix://${join(work, 'x.sock')}`, '--root', join(work, 'r')], work)).output).toMatch(
      /--allow-insecure-entitlement device: unknown entitlement/,
    );
  });
});

describe('unix sockets', () => {
  it('--group sets the socket group; a second daemon does not take over a live socket', async () => {
    const socket = join(work, 'group.sock');
    const daemon = await startBktd(['--addr', `unix://${socket}`, '--root', join(work, 'root-unix'), '--group', '1'], { cwd: work });
    try {
      const st = statSync(socket);
      expect(st.gid).toBe(1);
      expect(st.mode & 0o777).toBe(0o660);
      const second = await bktdFails(['--addr', `unix://${socket}`, '--root', join(work, 'root-unix2')], work);
      expect(second.code).toBe(1);
      expect(second.output).toMatch(/another process is listening on .*group\.sock/);
      const c = new Control(`unix://${socket}`);
      expect((await c.info()).buildkitVersion?.package).toBe('@bkt/server');
      c.close();
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
    expect(() => statSync(socket)).toThrow();
  });
});
