/**
 * The generated client constructors load grpc-js on first use: a namespace
 * imported alone loads no grpc-js (checked in a fresh process, on the built
 * package), and the constructor behaves as grpc-js's own.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, Client, Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { buildSync } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { HealthClient, HealthService, HealthCheckResponse_ServingStatus, type HealthCheckRequest, type HealthCheckResponse } from './health.js';
import { ControlClient, ControlService } from './control.js';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('generated gRPC clients', () => {
  it('importing a namespace with services loads no grpc-js; making a client does', () => {
    const script = `
      import { createRequire } from 'node:module';
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('@grpc/grpc-js'));
      const namespaces = ['control', 'gateway', 'controller', 'filesync', 'secrets', 'sshforward', 'health', 'imagebuilder'];
      for (const ns of namespaces) await import('@bkt/api/' + ns);
      const before = loaded();
      const { ControlClient } = await import('@bkt/api/control');
      const { credentials } = await import('@grpc/grpc-js');
      new ControlClient('unix:///nonexistent.sock', credentials.createInsecure()).close();
      console.log(JSON.stringify({ before, after: loaded() }));
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: packageDir, encoding: 'utf8' });
    expect(JSON.parse(out.trim())).toEqual({ before: false, after: true });
  });

  it('is grpc-js’s constructor: new, static service and name, instanceof, subclasses', () => {
    const client = new ControlClient('unix:///nonexistent.sock', credentials.createInsecure());
    try {
      expect(client).toBeInstanceOf(ControlClient);
      expect(client).toBeInstanceOf(Client);
      expect(ControlClient.serviceName).toBe('moby.buildkit.v1.Control');
      expect(ControlClient.service).toBe(ControlService);
      expect(typeof client.solve).toBe('function');
    } finally {
      client.close();
    }
    class Named extends ControlClient {
      kind() {
        return 'named';
      }
    }
    const sub = new Named('unix:///nonexistent.sock', credentials.createInsecure());
    expect(sub.kind()).toBe('named');
    expect(sub).toBeInstanceOf(ControlClient);
    sub.close();
    expect(() => (ControlClient as unknown as (a: string) => void)('x')).toThrow(TypeError);
  });

  it('calls a grpc-js server', async () => {
    const server = new Server();
    server.addService(HealthService, {
      check: (call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, cb: sendUnaryData<HealthCheckResponse>) =>
        cb(null, { status: call.request.service === '' ? HealthCheckResponse_ServingStatus.SERVING : HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN }),
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    const client = new HealthClient(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      const res = await new Promise<HealthCheckResponse>((resolve, reject) => client.check({ service: '' }, (err, r) => (err ? reject(err) : resolve(r))));
      expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  it('make a client in a CommonJS bundle (no import.meta.url there), as a frontend bundled with esbuild does', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bkt-api-cjs-'));
    try {
      writeFileSync(join(dir, 'entry.ts'), `
        import { credentials } from '@grpc/grpc-js';
        import { ControlClient } from ${JSON.stringify(join(packageDir, 'src/control.ts'))};
        new ControlClient('unix:///nonexistent.sock', credentials.createInsecure()).close();
        console.log('made');
      `);
      buildSync({ entryPoints: [join(dir, 'entry.ts')], bundle: true, platform: 'node', format: 'cjs', outfile: join(dir, 'bundle.cjs'), nodePaths: [join(packageDir, 'node_modules'), join(packageDir, '../../node_modules')], logLevel: 'silent' });
      // Outside any node_modules tree: the bundle must hold grpc-js itself.
      expect(execFileSync(process.execPath, [join(dir, 'bundle.cjs')], { cwd: dir, encoding: 'utf8' }).trim()).toBe('made');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
