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
import { mkfile, scratch } from '@bkt/llb';
import { removeDir, tempDir } from '../helpers.js';
import { Control, startBktd, type RunningDaemon } from '../daemon/lib.js';

let work: string;
let daemon: RunningDaemon;
let address: string;
let controlClient: Control;
let bridge: gw.LLBBridgeClient;

beforeAll(async () => {
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
  if (work) await removeDir(work);
});

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
