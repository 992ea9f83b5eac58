import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { daemonAddress } from './address.js';

const dir = mkdtempSync(join(tmpdir(), 'bkt-address-'));
for (const f of ['ca.pem', 'cert.pem', 'key.pem']) writeFileSync(join(dir, f), `${f}\n`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('daemonAddress', () => {
  it('is undefined without --addr (the build runs in this process)', () => {
    expect(daemonAddress({}, dir)).toBeUndefined();
    expect(daemonAddress({ addr: '' }, dir)).toBeUndefined();
  });

  it('takes unix:///PATH as the gRPC target, without TLS', () => {
    expect(daemonAddress({ addr: 'unix:///run/bkt/bktd.sock' }, dir)).toEqual({ address: 'unix:///run/bkt/bktd.sock', target: 'unix:///run/bkt/bktd.sock' });
  });

  it('takes tcp://HOST:PORT with the three TLS files, read relative to the working directory', () => {
    const a = daemonAddress({ addr: 'tcp://127.0.0.1:1234', tlscacert: 'ca.pem', tlscert: 'cert.pem', tlskey: 'key.pem' }, dir);
    expect(a?.target).toBe('127.0.0.1:1234');
    expect(a?.tls && { ca: a.tls.ca.toString(), cert: a.tls.cert.toString(), key: a.tls.key.toString() }).toEqual({ ca: 'ca.pem\n', cert: 'cert.pem\n', key: 'key.pem\n' });
  });

  it('refuses tcp:// without mutual TLS, naming the missing flags', () => {
    expect(() => daemonAddress({ addr: 'tcp://h:1' }, dir)).toThrow('--addr tcp://h:1: bktd serves TCP only with mutual TLS; missing --tlscacert, --tlscert, --tlskey');
    expect(() => daemonAddress({ addr: 'tcp://h:1', tlscacert: 'ca.pem' }, dir)).toThrow('missing --tlscert, --tlskey');
  });

  it('refuses other schemes, relative sockets, bad ports, TLS flags for a socket or no address, and unreadable files', () => {
    expect(() => daemonAddress({ addr: 'docker-container://b' }, dir)).toThrow('--addr docker-container://b: want unix:///PATH or tcp://HOST:PORT');
    expect(() => daemonAddress({ addr: 'unix://bktd.sock' }, dir)).toThrow('the socket path must be absolute');
    expect(() => daemonAddress({ addr: 'tcp://host' }, dir)).toThrow('want tcp://HOST:PORT');
    expect(() => daemonAddress({ addr: 'unix:///s', tlskey: 'key.pem' }, dir)).toThrow('--tlskey is for tcp:// addresses');
    expect(() => daemonAddress({ tlscacert: 'ca.pem' }, dir)).toThrow('--tlscacert: TLS files are for a daemon at a tcp:// address');
    expect(() => daemonAddress({ addr: 'tcp://h:1', tlscacert: 'nope.pem', tlscert: 'cert.pem', tlskey: 'key.pem' }, dir)).toThrow(/--tlscacert nope\.pem: ENOENT/);
  });
});
