import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { controller } from '@bkt/api';
import type { BuildClient } from '@bkt/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Invocation } from '../invoke.js';
import { remoteDebugSolve } from './debug.js';

/** A fake Controller on a unix socket: Build answers `outcome`, Status ends at once; Disconnect calls are recorded. */
async function fakeController(dir: string, outcome: 'ok' | 'fail') {
  const disconnected: string[] = [];
  const built: string[] = [];
  const server = new grpc.Server();
  const unimplemented = (_: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED });
  server.addService(controller.ControllerService as unknown as grpc.ServiceDefinition, {
    build: (call: grpc.ServerUnaryCall<controller.BuildRequest, controller.BuildResponse>, cb: grpc.sendUnaryData<controller.BuildResponse>) => {
      built.push(call.request.Ref);
      if (outcome === 'ok') cb(null, { ExporterResponse: {} });
      else cb({ code: grpc.status.UNKNOWN, details: 'process "/bin/sh -c exit 3" did not complete successfully: exit code: 3' });
    },
    status: (call: grpc.ServerWritableStream<unknown, unknown>) => call.end(),
    disconnect: (call: grpc.ServerUnaryCall<controller.DisconnectRequest, controller.DisconnectResponse>, cb: grpc.sendUnaryData<controller.DisconnectResponse>) => {
      disconnected.push(call.request.Ref);
      cb(null, {});
    },
    input: unimplemented,
    invoke: (call: grpc.ServerDuplexStream<unknown, unknown>) => call.emit('error', { code: grpc.status.UNIMPLEMENTED }),
    list: unimplemented,
    info: unimplemented,
    listProcesses: unimplemented,
    disconnectProcess: unimplemented,
  });
  const socket = join(dir, 'c.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  return { address: { address: `unix://${socket}`, target: `unix://${socket}` }, built, disconnected, close: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
}

const io = () => {
  const sink = () => Object.assign(new PassThrough(), { isTTY: false });
  return { stdin: new PassThrough(), stdout: sink(), stderr: sink(), cwd: '/' } as unknown as Invocation['io'];
};

const request = (dir: string) => ({
  frontend: 'dockerfile.v0',
  frontendAttrs: { filename: 'Dockerfile' },
  exporters: [],
  client: {} as BuildClient,
  localDirs: { context: dir, dockerfile: dir },
});

describe('remoteDebugSolve: the held build is always disconnected', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bkt-remote-debug-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('when the invocation fails before the process starts (beforeRun throws)', async () => {
    const fake = await fakeController(dir, 'fail');
    try {
      const inv: Invocation = {
        config: { onResult: false, onError: true, env: [] },
        io: io(),
        beforeRun: () => {
          throw new Error('the display could not end');
        },
      };
      await expect(remoteDebugSolve(fake.address, request(dir), inv)).rejects.toThrow('the display could not end');
      expect(fake.built).toHaveLength(1);
      expect(fake.disconnected).toEqual(fake.built);
    } finally {
      await fake.close();
    }
  });

  it('when the build failed and nothing is run, and when it succeeded', async () => {
    const failing = await fakeController(dir, 'fail');
    try {
      const inv: Invocation = { config: { onResult: true, onError: false, env: [] }, io: io(), beforeRun: () => undefined };
      await expect(remoteDebugSolve(failing.address, request(dir), inv)).rejects.toThrow(/exit code: 3/);
      expect(failing.disconnected).toEqual(failing.built);
    } finally {
      await failing.close();
    }
    const ok = await fakeController(dir, 'ok');
    try {
      const inv: Invocation = { config: { onResult: false, onError: true, env: [] }, io: io(), beforeRun: () => undefined };
      await remoteDebugSolve(ok.address, request(dir), inv);
      expect(ok.disconnected).toEqual(ok.built);
    } finally {
      await ok.close();
    }
  });
});
