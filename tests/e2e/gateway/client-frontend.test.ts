/**
 * Client-side frontends on bktd's main endpoint (BuildKit's `client.Build`):
 * a Control.Solve with no Definition and no Frontend starts a build whose
 * frontend is the client; its LLBBridge calls, routed by the
 * `buildkit-controlapi-buildid` metadata key, solve, read files and return
 * the result (with image config metadata). Failed solves carry BuildKit's
 * typed error details in the gRPC status. grpc-js stubs only.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as gw from '@bkt/api/gateway';
import * as google from '@bkt/api/google';
import * as pb from '@bkt/api/pb';
import { image, mkfile, scratch } from '@bkt/llb';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { Control, mountsUnder, runcContainers, startBktd, type RunningDaemon } from '../daemon/lib.js';

let work: string;
let daemon: RunningDaemon;
let address: string;
let controlClient: Control;
let bridge: gw.LLBBridgeClient;
let registry: RegistryServer;
let busybox: PushedImage;

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'e2e/busybox');
  work = await tempDir('gateway-client');
  address = `unix://${join(work, 'bktd.sock')}`;
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

/** Runs one process over ExecProcess; resolves with its stdout and exit (code and error status). */
function exec(ref: string, init: Partial<gw.InitMessage>, stdin?: string): Promise<{ stdout: string; code: number; error?: { code: number; message: string } }> {
  const md = new grpc.Metadata();
  md.set('buildkit-controlapi-buildid', ref);
  const stream = bridge.execProcess(md);
  let stdout = '';
  return new Promise((resolve, reject) => {
    let exit: { code: number; error?: { code: number; message: string } } | undefined;
    stream.on('data', (m: gw.ExecMessage) => {
      if (m.Input?.$case === 'File' && m.Input.value.Fd === 1) stdout += m.Input.value.Data.toString();
      if (m.Input?.$case === 'Started' && stdin !== undefined) {
        stream.write({ ProcessID: 'p', Input: { $case: 'File', value: { Fd: 0, EOF: true, Data: Buffer.from(stdin) } } });
      }
      if (m.Input?.$case === 'Exit') exit = { code: m.Input.value.Code, ...(m.Input.value.Error ? { error: { code: m.Input.value.Error.code, message: m.Input.value.Error.message } } : {}) };
      if (m.Input?.$case === 'Done') {
        stream.end();
        resolve({ stdout, ...exit! });
      }
    });
    stream.on('error', reject);
    stream.write({ ProcessID: 'p', Input: { $case: 'Init', value: gw.InitMessage.fromPartial({ Fds: [0, 1, 2], ...init }) } });
  });
}

/** A unary LLBBridge call for build `ref`. */
function call<Req, Res>(name: keyof gw.LLBBridgeClient, ref: string | undefined, req: Req): Promise<Res> {
  const md = new grpc.Metadata();
  if (ref) md.set('buildkit-controlapi-buildid', ref);
  return new Promise((resolve, reject) =>
    (bridge[name] as unknown as (r: Req, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: Res) => void) => void).call(bridge, req, md, (e, r) => (e ? reject(e) : resolve(r))),
  );
}

/** Calls until the build is registered (Control.Solve runs concurrently). */
async function ping(ref: string): Promise<gw.PongResponse> {
  for (let i = 0; ; i++) {
    try {
      return await call<gw.PingRequest, gw.PongResponse>('ping', ref, {});
    } catch (err) {
      if ((err as grpc.ServiceError).code !== grpc.status.NOT_FOUND || i > 100) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function detailsOf(err: grpc.ServiceError): { typeUrl: string; json: Record<string, unknown> }[] {
  const raw = err.metadata?.get('grpc-status-details-bin')[0];
  if (!raw) return [];
  return google.rpc.Status.decode(raw as Buffer).details.map((d) => ({ typeUrl: d.typeUrl, json: JSON.parse(Buffer.from(d.value).toString()) as Record<string, unknown> }));
}

describe('client-side frontends through bktd', () => {
  it('Control.Solve without a frontend waits for the client; its LLBBridge calls build and Return ends it', async () => {
    const ref = `client-build-${Date.now()}`;
    const solving = controlClient.solve({ Ref: ref });
    const pong = await ping(ref);
    expect(pong.FrontendAPICaps.map((c) => c.ID)).toContain('readfile');
    expect(pong.Workers).toHaveLength(1);

    const def = scratch().file(mkfile('/hello.txt', 0o644, 'from a client frontend\n')).marshal({ platform: 'linux/amd64' });
    const res = await call<gw.SolveRequest, gw.SolveResponse>('solve', ref, { ...gw.SolveRequest.fromPartial({}), Definition: def, allowResultReturn: true, allowResultArrayRef: true });
    const id = res.result?.result?.$case === 'ref' ? res.result.result.value.id : '';
    expect(id).not.toBe('');
    const file = await call<gw.ReadFileRequest, gw.ReadFileResponse>('readFile', ref, { Ref: id, FilePath: 'hello.txt', Range: undefined });
    expect(file.Data.toString()).toBe('from a client frontend\n');

    // Without the metadata key, or for another build, a call is refused naming the key.
    const missing = await call('ping', undefined, {}).catch((e: grpc.ServiceError) => e);
    expect((missing as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((missing as grpc.ServiceError).details).toContain('buildkit-controlapi-buildid');
    const other = await call('ping', 'no-such-build', {}).catch((e: grpc.ServiceError) => e);
    expect((other as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);

    await call<gw.ReturnRequest, gw.ReturnResponse>('return', ref, {
      result: { result: { $case: 'ref', value: { id, def: undefined } }, metadata: { 'containerimage.config': Buffer.from('{"config":{}}') }, attestations: {} },
      error: undefined,
    });
    const done = await solving;
    expect(done.ExporterResponse).toBeDefined();
    // Once the build is over its session is gone.
    const after = await call('ping', ref, {}).catch((e: grpc.ServiceError) => e);
    expect((after as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
  });

  it('NewContainer over a solved result, ExecProcess with stdin and stdout, ReleaseContainer; host networking and insecure exec refused without the entitlement', async () => {
    const ref = `client-ctr-${Date.now()}`;
    const solving = controlClient.solve({ Ref: ref });
    await ping(ref);
    const def = image(busybox.reference).marshal({ platform: 'linux/amd64' });
    const res = await call<gw.SolveRequest, gw.SolveResponse>('solve', ref, { ...gw.SolveRequest.fromPartial({}), Definition: def, allowResultReturn: true, allowResultArrayRef: true });
    const id = res.result?.result?.$case === 'ref' ? res.result.result.value.id : '';
    const rootMount = pb.Mount.fromPartial({ dest: '/', resultID: id, mountType: pb.MountType.BIND, output: -1 });

    // Host networking without the client's entitlement: refused, naming it (CVE-2024-23653's class).
    const host = await call('newContainer', ref, gw.NewContainerRequest.fromPartial({ ContainerID: 'h', Mounts: [rootMount], Network: pb.NetMode.HOST })).catch((e: grpc.ServiceError) => e);
    expect((host as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((host as grpc.ServiceError).details).toContain('network.host');

    await call('newContainer', ref, gw.NewContainerRequest.fromPartial({ ContainerID: 'c1', Mounts: [rootMount] }));
    const run = await exec(ref, { ContainerID: 'c1', Meta: pb.Meta.fromPartial({ args: ['sh', '-c', 'echo hi; cat; echo $FOO'], env: ['FOO=bar', 'PATH=/bin'], cwd: '/' }) }, 'from stdin\n');
    expect(run).toEqual({ stdout: 'hi\nfrom stdin\nbar\n', code: 0 });
    // The first process is the container's init (as BuildKit's): once it exited, the container runs no more.
    const after = await exec(ref, { ContainerID: 'c1', Meta: pb.Meta.fromPartial({ args: ['true'], env: ['PATH=/bin'], cwd: '/' }) });
    expect(after.error?.code).toBe(grpc.status.NOT_FOUND);
    await call('releaseContainer', ref, { ContainerID: 'c1' });

    await call('newContainer', ref, gw.NewContainerRequest.fromPartial({ ContainerID: 'c2', Mounts: [rootMount] }));
    const failing = await exec(ref, { ContainerID: 'c2', Meta: pb.Meta.fromPartial({ args: ['sh', '-c', 'exit 3'], env: ['PATH=/bin'], cwd: '/' }) });
    expect(failing.code).toBe(3);
    await call('releaseContainer', ref, { ContainerID: 'c2' });

    // Insecure exec without the entitlement: the process is refused, naming it.
    await call('newContainer', ref, gw.NewContainerRequest.fromPartial({ ContainerID: 'c3', Mounts: [rootMount] }));
    const insecure = await exec(ref, { ContainerID: 'c3', Security: pb.SecurityMode.INSECURE, Meta: pb.Meta.fromPartial({ args: ['true'], env: ['PATH=/bin'], cwd: '/' }) });
    expect(insecure.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(insecure.error?.message).toContain('security.insecure');
    await call('releaseContainer', ref, { ContainerID: 'c3' });
    const again = await call('releaseContainer', ref, { ContainerID: 'c3' }).catch((e: grpc.ServiceError) => e);
    expect((again as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
    await call('return', ref, { result: gw.Result.fromPartial({}), error: undefined });
    await solving;
    expect(await runcContainers(join(work, 'root'))).toEqual([]);
    expect(mountsUnder(join(work, 'root'))).toEqual([]);
  });

  it("a failed RUN's Solve error carries errdefs.Solve; a container from its mount ids shows what the step wrote", async () => {
    const ref = `client-debug-${Date.now()}`;
    const solving = controlClient.solve({ Ref: ref }).catch((e: grpc.ServiceError) => e);
    await ping(ref);
    const def = image(busybox.reference).run({ args: ['sh', '-c', 'echo partial work > /written.txt; exit 7'] }).root().marshal({ platform: 'linux/amd64' });
    const err = (await call('solve', ref, { ...gw.SolveRequest.fromPartial({}), Definition: def }).catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
    expect(err.details).toContain('exit code: 7');
    const solve = detailsOf(err).find((d) => d.typeUrl === 'github.com/moby/buildkit/errdefs.Solve+json');
    expect(solve).toBeDefined();
    const { inputIDs, mountIDs, op } = solve!.json as { inputIDs: string[]; mountIDs: string[]; op: { exec: { meta: { args: string[] }; mounts: { dest: string }[] } } };
    expect(op.exec.meta.args).toEqual(['sh', '-c', 'echo partial work > /written.txt; exit 7']);
    expect(inputIDs).toHaveLength(1);
    expect(mountIDs[0]).not.toBe('');
    // The step's root as the process left it, as buildx debug rebuilds it.
    await call('newContainer', ref, gw.NewContainerRequest.fromPartial({ ContainerID: 'dbg', Mounts: [pb.Mount.fromPartial({ dest: '/', resultID: mountIDs[0], mountType: pb.MountType.BIND, output: -1 })] }));
    const cat = await exec(ref, { ContainerID: 'dbg', Meta: pb.Meta.fromPartial({ args: ['cat', '/written.txt'], env: ['PATH=/bin'], cwd: '/' }) });
    expect(cat).toEqual({ stdout: 'partial work\n', code: 0 });
    await call('releaseContainer', ref, { ContainerID: 'dbg' });
    await call('return', ref, { result: undefined, error: { code: err.code, message: err.details, details: [] } });
    const failed = (await solving) as grpc.ServiceError;
    expect(failed.details).toContain('exit code: 7');
    expect(await runcContainers(join(work, 'root'))).toEqual([]);
    expect(mountsUnder(join(work, 'root'))).toEqual([]);
  });

  it("a client frontend's returned error fails its Control.Solve with the error", async () => {
    const ref = `client-fail-${Date.now()}`;
    const solving = controlClient.solve({ Ref: ref }).catch((e: grpc.ServiceError) => e);
    await ping(ref);
    await call('return', ref, { result: undefined, error: { code: grpc.status.INVALID_ARGUMENT, message: 'the client frontend gave up', details: [] } });
    const err = (await solving) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toContain('the client frontend gave up');
  });

  it('a failed solve carries errdefs details naming the failed op in the gRPC status', async () => {
    const ref = `client-detail-${Date.now()}`;
    const solving = controlClient.solve({ Ref: ref }).catch((e: grpc.ServiceError) => e);
    await ping(ref);
    // A file op that fails: mkfile under a parent that does not exist.
    const def = scratch().file(mkfile('/no/such/dir/f', 0o644, 'x')).marshal({ platform: 'linux/amd64' });
    const err = (await call('solve', ref, { ...gw.SolveRequest.fromPartial({}), Definition: def }).catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
    expect(err.code).not.toBe(grpc.status.OK);
    const details = detailsOf(err);
    const vertex = details.find((d) => d.typeUrl === 'github.com/moby/buildkit/errdefs.Vertex+json');
    expect(vertex?.json.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    await call('return', ref, { result: undefined, error: { code: err.code, message: err.details, details: [] } });
    const failed = (await solving) as grpc.ServiceError;
    expect(failed.details).toContain('parent directory does not exist');
  });
});
