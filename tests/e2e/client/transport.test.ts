/**
 * How `bkt` reaches a daemon: a tcp:// bktd with mutual TLS through
 * `--tlscacert/--tlscert/--tlskey` (as buildctl's flags); a tcp:// address
 * without them refused before anything is sent; a daemon that does not
 * answer named in the error; `--addr` winning over `BKT_HOST`.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, tempDir } from '../helpers.js';
import { startBktd, type RunningDaemon } from '../daemon/lib.js';
import { bktEnv } from './lib.js';

let work: string;

/** A CA and, signed by it, certificates for `names` (serverAuth and clientAuth; SAN 127.0.0.1). */
function makeCerts(dir: string, ca: string, names: string[]): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${ca}`, '-keyout', `${ca}.key`, '-out', `${ca}.pem`);
  for (const name of names) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2', '-out', `${name}.pem`, '-extfile', 'ext.cnf');
  }
}

const bkt = (args: string[], env: Record<string, string> = {}) => bktEnv(args, { cwd: work, env });

beforeAll(async () => {
  work = await tempDir('client-transport');
  await writeFile(join(work, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  makeCerts(work, 'ca', ['server', 'client']);
  makeCerts(work, 'other-ca', ['stranger']);
  await mkdir(join(work, 'ctx'));
  await writeFile(join(work, 'ctx/Dockerfile'), 'FROM scratch\nCOPY hello.txt /\n');
  await writeFile(join(work, 'ctx/hello.txt'), 'hello over tcp\n');
});

afterAll(async () => {
  if (work) await removeDir(work);
});

describe('a tcp:// daemon with mutual TLS', () => {
  let daemon: RunningDaemon;
  let address: string;

  beforeAll(async () => {
    daemon = await startBktd(['--debug', '--addr', 'tcp://127.0.0.1:0', '--root', join(work, 'root'), '--tlscert', 'server.pem', '--tlskey', 'server.key', '--tlscacert', 'ca.pem'], { cwd: work });
    address = daemon.addresses[0]!;
  });

  afterAll(async () => {
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  it('builds with --tlscacert, --tlscert and --tlskey; its output comes back over the session', async () => {
    const tls = ['--tlscacert', 'ca.pem', '--tlscert', 'client.pem', '--tlskey', 'client.key'];
    const r = await bkt(['build', '--addr', address, ...tls, '--progress', 'plain', '-o', 'type=local,dest=out', 'ctx']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^#\d+ \[1\/1\] COPY hello.txt \/$/m);
    const du = await bkt(['du', ...tls], { BKT_HOST: address });
    expect(du.code, du.stderr).toBe(0);
    expect(du.stdout).toMatch(/^Total:/m);
  });

  it('without the TLS flags is refused before anything is sent, naming what is missing', async () => {
    const calls = () => daemon.output().match(/rpc \w+/g)?.length ?? 0;
    const before = calls();
    expect(before).toBeGreaterThan(0); // --debug logs each call: the count below means something
    const r = await bkt(['build', '--addr', address, '--tlscacert', 'ca.pem', 'ctx']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`error: --addr ${address}: bktd serves TCP only with mutual TLS; missing --tlscert, --tlskey\n`);
    expect(calls()).toBe(before);
  });

  it('with a certificate another CA signed, the daemon refuses the client: an error naming the address', async () => {
    const r = await bkt(['du', '--addr', address, '--tlscacert', 'ca.pem', '--tlscert', 'stranger.pem', '--tlskey', 'stranger.key']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error: cannot reach bktd at ${address} (--addr / BKT_HOST): `);
  });
});

describe('addresses', () => {
  it('a daemon that does not answer is an error naming its address; --addr wins over BKT_HOST', async () => {
    const missing = `unix://${join(work, 'no-daemon.sock')}`;
    const r = await bkt(['build', '--addr', missing, 'ctx'], { BKT_HOST: 'tcp://127.0.0.1:1' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error: cannot reach bktd at ${missing} (--addr / BKT_HOST): `);
    expect(r.stderr).toContain('ENOENT');
    const env = await bkt(['du'], { BKT_HOST: missing });
    expect(env.code).toBe(1);
    expect(env.stderr).toContain(`cannot reach bktd at ${missing}`);
  });

  it('malformed addresses and misplaced TLS flags are errors naming the flag', async () => {
    expect((await bkt(['build', '--addr', 'docker-container://x', 'ctx'])).stderr).toBe('error: --addr docker-container://x: want unix:///PATH or tcp://HOST:PORT\n');
    expect((await bkt(['du', '--addr', 'unix://relative.sock'])).stderr).toMatch(/^error: --addr unix:\/\/relative\.sock: the socket path must be absolute/);
    expect((await bkt(['du', '--tlscert', 'client.pem'])).stderr).toMatch(/^error: --tlscert: TLS files are for a daemon at a tcp:\/\/ address; give --addr \(or BKT_HOST\)/);
    const root = await bkt(['build', '--addr', `unix://${join(work, 'x.sock')}`, '--root', join(work, 'r'), 'ctx']);
    expect(root.code).toBe(1);
    expect(root.stderr).toMatch(/^error: --root .* and --addr .*: --root is the store of a build in this process; a daemon uses its own store/m);
  });
});
