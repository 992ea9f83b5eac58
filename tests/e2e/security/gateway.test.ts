/**
 * What a frontend can reach through the gateway (LLBBridge on bktd, a
 * client-side frontend with grpc-js stubs): ReadFile, ReadDir and StatFile
 * resolve paths inside the result's root — an absolute symlink, a climbing
 * one and `../` names never read a host file — and a frontend gets no
 * entitlement the client did not grant: an exec step with host networking
 * or insecure mode, a container on the host network and an insecure process
 * are refused, naming the entitlement (the class of CVE-2024-23653).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as gw from '@bkt/api/gateway';
import * as pb from '@bkt/api/pb';
import { image, scratch } from '@bkt/llb';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { Control, startBktd, type RunningDaemon } from '../daemon/lib.js';

let work: string;
let daemon: RunningDaemon;
let registry: RegistryServer;
let busybox: PushedImage;
let controlClient: Control;
let bridge: gw.LLBBridgeClient;
const hostPasswd = readFileSync('/etc/passwd', 'utf8');

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'security/busybox');
  work = await tempDir('security-gateway');
  const address = `unix://${join(work, 'bktd.sock')}`;
  daemon = await startBktd(['--addr', address, '--root', join(work, 'root')], { cwd: work });
  controlClient = new Control(address);
  bridge = new gw.LLBBridgeClient(address, grpc.credentials.createInsecure());
});

afterAll(async () => {
  bridge?.close();
  controlClient?.close();
  await daemon?.stop();
  await registry?.stop();
  if (work) await removeDir(work);
});

function call<Res>(name: keyof gw.LLBBridgeClient, ref: string, req: unknown): Promise<Res> {
  const md = new grpc.Metadata();
  md.set('buildkit-controlapi-buildid', ref);
  return new Promise((resolve, reject) =>
    (bridge[name] as unknown as (r: unknown, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: Res) => void) => void).call(bridge, req, md, (e, r) => (e ? reject(e) : resolve(r))),
  );
}

/** Starts a client build and waits until its LLBBridge answers. */
async function clientBuild(): Promise<{ ref: string; done: Promise<unknown> }> {
  const ref = `security-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const done = controlClient.solve({ Ref: ref }).catch((e: unknown) => e);
  for (let i = 0; ; i++) {
    try {
      await call('ping', ref, {});
      return { ref, done };
    } catch (err) {
      if ((err as grpc.ServiceError).code !== grpc.status.NOT_FOUND || i > 100) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const solveReq = (def: pb.Definition) => ({ ...gw.SolveRequest.fromPartial({}), Definition: def, allowResultReturn: true, allowResultArrayRef: true });
const refOf = (res: gw.SolveResponse) => (res.result?.result?.$case === 'ref' ? res.result.result.value.id : '');

describe('the gateway confines a frontend', () => {
  it("ReadFile, ReadDir and StatFile stay inside the result's root: symlinks and ../ read no host file", async () => {
    const { ref, done } = await clientBuild();
    const links = image(busybox.reference)
      .run({ args: ['sh', '-c', 'ln -s /etc/passwd /abs && ln -s ../../../../../etc/hostname /climb && ln -s / /rootlink && echo inside > /etc/hostname'] })
      .root()
      .marshal({ platform: 'linux/amd64' });
    const id = refOf(await call<gw.SolveResponse>('solve', ref, solveReq(links)));
    const read = (path: string) => call<gw.ReadFileResponse>('readFile', ref, { Ref: id, FilePath: path, Range: undefined }).then((r) => r.Data.toString());

    // The image's /etc/passwd (busybox's two users), never the host's.
    const abs = await read('/abs');
    expect(abs).toContain('root:x:0:0');
    expect(abs).not.toBe(hostPasswd);
    expect(await read('/climb')).toBe('inside\n');
    expect(await read('../../../../etc/hostname')).toBe('inside\n');
    expect(await read('/rootlink/etc/hostname')).toBe('inside\n');
    const rootEntries = (await call<gw.ReadDirResponse>('readDir', ref, { Ref: id, DirPath: '/rootlink/..', IncludePattern: '' })).entries.map((e) => e.path);
    expect(rootEntries).toContain('abs');
    const missing = await read('/rootlink/../../no-such-host-file').catch((e: grpc.ServiceError) => e);
    expect((missing as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
    const st = await call<gw.StatFileResponse>('statFile', ref, { Ref: id, Path: '/abs' });
    expect(Number(st.stat?.size)).toBe(Buffer.byteLength(abs));

    await call('return', ref, { result: gw.Result.fromPartial({}), error: undefined });
    await done;
  });

  it('a frontend gets no entitlement the client did not grant: exec steps, containers and processes are refused naming it', async () => {
    const { ref, done } = await clientBuild();
    for (const [opts, entitlement] of [
      [{ network: 'host' }, 'network.host'],
      [{ security: 'insecure' }, 'security.insecure'],
    ] as const) {
      const def = scratch().run({ args: ['/bin/true'], ...opts }).root().marshal({ platform: 'linux/amd64' });
      const err = (await call('solve', ref, solveReq(def)).catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
      expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(err.details).toContain(entitlement);
    }
    const id = refOf(await call<gw.SolveResponse>('solve', ref, solveReq(image(busybox.reference).marshal({ platform: 'linux/amd64' }))));
    const root = pb.Mount.fromPartial({ dest: '/', resultID: id, mountType: pb.MountType.BIND, output: -1 });
    const host = (await call('newContainer', ref, gw.NewContainerRequest.fromPartial({ ContainerID: 'h', Mounts: [root], Network: pb.NetMode.HOST })).catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
    expect(host.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(host.details).toContain('network.host');

    await call('newContainer', ref, gw.NewContainerRequest.fromPartial({ ContainerID: 'c', Mounts: [root] }));
    const md = new grpc.Metadata();
    md.set('buildkit-controlapi-buildid', ref);
    const stream = bridge.execProcess(md);
    const exit = await new Promise<gw.ExitMessage>((resolve, reject) => {
      stream.on('data', (m: gw.ExecMessage) => {
        if (m.Input?.$case === 'Exit') resolve(m.Input.value);
      });
      stream.on('error', reject);
      stream.write({ ProcessID: 'p', Input: { $case: 'Init', value: gw.InitMessage.fromPartial({ ContainerID: 'c', Security: pb.SecurityMode.INSECURE, Fds: [1, 2], Meta: pb.Meta.fromPartial({ args: ['cat', '/proc/self/status'], env: ['PATH=/bin'], cwd: '/' }) }) } });
    });
    stream.end();
    expect(exit.Error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(exit.Error?.message).toContain('security.insecure');
    await call('releaseContainer', ref, { ContainerID: 'c' });
    await call('return', ref, { result: gw.Result.fromPartial({}), error: undefined });
    await done;
  });
});
