/**
 * bktd's Control service through a grpc-js client made from the generated
 * stubs, against the built daemon on a unix socket, a real registry and
 * real runc (issue 11): every RPC, the image digest against the daemonless
 * CLI, and malformed requests answered INVALID_ARGUMENT with the daemon
 * living on.
 */
import { statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { control, pb, sourcepolicy } from '@bkt/api';
import { image } from '@bkt/llb';
import { pushBusyboxImage, skopeoInspect, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { bkt, REPO, removeDir, tempDir } from '../helpers.js';
import { HOST_ARCH, readMetadata } from '../images/lib.js';
import { Control, rawUnary, startBktd, type RunningDaemon } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;
let root: string;
let socket: string;
let daemon: RunningDaemon;
let client: Control;
let definition: pb.Definition;

const EPOCH = 1_700_000_000;

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('daemon');
  root = join(work, 'root');
  socket = join(work, 'bktd.sock');
  daemon = await startBktd(['--addr', `unix://${socket}`, '--root', root], { cwd: work });
  client = new Control(`unix://${socket}`);
  definition = image(busybox.reference)
    .run({ shell: 'echo "from the daemon" > /hello && echo step-output-line' })
    .root()
    .marshal();
});

afterAll(async () => {
  client?.close();
  if (daemon) expect(await daemon.stop()).toBe(0);
  await registry?.stop();
  if (work) await removeDir(work);
});

const imageExporter = (name: string, extra: Record<string, string> = {}) => ({ Type: 'image', Attrs: { name, push: 'true', ...extra } });

describe('the socket', () => {
  it('is a unix socket of mode 0660', () => {
    const st = statSync(socket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
  });
});

describe('Info and ListWorkers', () => {
  it('Info: the package and version of the daemon', async () => {
    const pkg = JSON.parse(await readFile(join(REPO, 'packages/server/package.json'), 'utf8')) as { version: string };
    const r = await client.info();
    expect(r.buildkitVersion).toEqual({ package: '@bkt/server', version: `v${pkg.version}`, revision: '' });
  });

  it('ListWorkers: one worker with buildkitd labels, the host platform first, the GC policy; containerd filters', async () => {
    const { record } = await client.listWorkers();
    expect(record).toHaveLength(1);
    const w = record[0]!;
    expect(w.ID).toMatch(/^[0-9a-z]{25}$/);
    expect(w.Labels['org.mobyproject.buildkit.worker.executor']).toBe('oci');
    expect(w.Labels['org.mobyproject.buildkit.worker.hostname']).toBe(hostname());
    expect(w.Labels['org.mobyproject.buildkit.worker.snapshotter']).toMatch(/^(overlayfs|native)$/);
    expect(w.platforms[0]).toMatchObject({ OS: 'linux', Architecture: HOST_ARCH });
    // buildkitd's default policies: the first keeps 48 h of local, cache-mount and git sources.
    expect(w.GCPolicy).toHaveLength(4);
    expect(w.GCPolicy[0]).toMatchObject({ all: false, keepDuration: 48 * 3600 * 1e9, filters: ['type==source.local', 'type==exec.cachemount', 'type==source.git.checkout'] });
    expect(w.GCPolicy[3]!.all).toBe(true);
    expect(w.BuildkitVersion?.package).toBe('@bkt/server');

    expect((await client.listWorkers(['labels.org.mobyproject.buildkit.worker.executor==oci'])).record).toHaveLength(1);
    expect((await client.listWorkers([`id==${w.ID}`])).record).toHaveLength(1);
    expect((await client.listWorkers(['id==nope'])).record).toHaveLength(0);
    await expect(client.listWorkers(['==oci'])).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('ListWorkers filter "==oci"') });
  });
});

describe('Solve and Status', () => {
  const ref = 'e2edaemonbuild0000000001';
  let early: Promise<control.StatusResponse[]>;
  let response: control.SolveResponse;

  it('solves a Definition and pushes the image to the registry (real runc step)', async () => {
    // A subscriber that calls Status before the build starts (as buildctl does) gets everything.
    early = client.status(ref);
    response = await client.solve({ Ref: ref, Definition: definition, Exporters: [imageExporter(`${registry.host}/e2e/daemon:v1`)] });
    const digest = response.ExporterResponse['containerimage.digest'];
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(response.ExporterResponse['image.name']).toBe(`${registry.host}/e2e/daemon:v1`);
    const info = (await skopeoInspect(`${registry.host}/e2e/daemon:v1`)) as { Digest: string; Layers: string[] };
    expect(info.Digest).toBe(digest);
    expect(info.Layers).toHaveLength(2);
    expect(info.Layers[0]).toBe(busybox.layer.digest);
  });

  it('Status: the early subscriber and a late one get every vertex, status and log, ending with the build', async () => {
    const [before, after] = [await early, await client.status(ref)];
    const summary = (rs: control.StatusResponse[]) => {
      const vertexes = new Map<string, control.Vertex>();
      for (const r of rs) for (const v of r.vertexes) vertexes.set(v.digest, { ...vertexes.get(v.digest), ...v });
      const logs = Buffer.concat(rs.flatMap((r) => r.logs.map((l) => l.msg))).toString();
      return { vertexes, logs };
    };
    const a = summary(before);
    const b = summary(after);
    expect([...b.vertexes.keys()].sort()).toEqual([...a.vertexes.keys()].sort());
    const exec = [...b.vertexes.values()].find((v) => v.name.includes('echo "from the daemon"'));
    expect(exec, [...b.vertexes.values()].map((v) => v.name).join('\n')).toBeDefined();
    expect(exec!.completed).toBeDefined();
    expect(exec!.error).toBe('');
    expect([...b.vertexes.values()].some((v) => v.name === 'exporting to image')).toBe(true);
    expect(a.logs).toContain('step-output-line');
    expect(b.logs).toContain('step-output-line');
  });

  it('Status of a ref that never runs is NOT_FOUND', async () => {
    await expect(client.status('no-such-build')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  }, 20_000);

  it('gives the same image digest as the daemonless CLI for the same Definition (SOURCE_DATE_EPOCH)', async () => {
    const attrs = { 'rewrite-timestamp': 'true', 'source-date-epoch': String(EPOCH) };
    const viaDaemon = await client.solve({ Definition: definition, Exporters: [imageExporter(`${registry.host}/e2e/repro:daemon`, attrs)] });
    await writeFile(join(work, 'def.pb'), pb.Definition.encode(definition).finish());
    const r = await bkt(
      ['build', '--llb', 'def.pb', '--root', join(work, 'cli-root'), '--progress', 'plain', '--metadata-file', 'cli.json', '-o', `type=image,name=${registry.host}/e2e/repro:cli,push=true,rewrite-timestamp=true,source-date-epoch=${EPOCH}`],
      { cwd: work },
    );
    expect(r.code, r.stderr).toBe(0);
    const cli = await readMetadata(join(work, 'cli.json'));
    expect(viaDaemon.ExporterResponse['containerimage.digest']).toBe(cli['containerimage.digest']);
  });

  it('the deprecated single Exporter field still exports', async () => {
    const r = await client.solve({ Definition: definition, ExporterDeprecated: 'image', ExporterAttrsDeprecated: { name: `${registry.host}/e2e/daemon:deprecated`, push: 'true' } });
    const info = (await skopeoInspect(`${registry.host}/e2e/daemon:deprecated`)) as { Digest: string };
    expect(info.Digest).toBe(r.ExporterResponse['containerimage.digest']);
  });

  it('a cancelled Solve call cancels its build; the daemon goes on', async () => {
    const slow = image(busybox.reference).run({ shell: 'sleep 60' }).root().marshal();
    const ref = 'e2edaemoncancelled000001';
    const deadline = new Date(Date.now() + 4000);
    await expect(client.solve({ Ref: ref, Definition: slow }, { deadline })).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    // The history records the build as cancelled once it has stopped.
    const events = await client.collect(client.listenBuildHistory({ Ref: ref }));
    expect(events.at(-1)?.type).toBe(control.BuildHistoryEventType.COMPLETE);
    expect(events.at(-1)?.record?.error?.message).toMatch(/cancel/i);
    expect((await client.info()).buildkitVersion?.package).toBe('@bkt/server');
  });
});

describe('refused Solve requests: a clear error, and the daemon lives on', () => {
  const invalid = async (req: Partial<control.SolveRequest>, message: RegExp) => {
    const err = await client.solve(req).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(err, 'the request was accepted').toBeDefined();
    expect({ code: err!.code, details: err!.details }).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(message) });
  };

  it('undecodable bytes', async () => {
    const r = await rawUnary(`unix://${socket}`, '/moby.buildkit.v1.Control/Solve', Buffer.from([0x12, 0xff, 0xff, 0xff, 0x0f, 1, 2]));
    expect(r.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(r.details).toMatch(/malformed \/moby\.buildkit\.v1\.Control\/Solve request/);
  });

  it('an op that does not decode, a definition without a return, both Definition and Frontend, an empty exporter type, a bad ref', async () => {
    await invalid({ Definition: { def: [Buffer.from([0xff, 0xff, 0xff])], metadata: {}, Source: undefined } }, /op|definition/i);
    await invalid({ Definition: { def: definition.def.slice(0, -1), metadata: {}, Source: undefined } }, /definition/i);
    await invalid({ Definition: definition, Frontend: 'dockerfile.v0' }, /Definition or a Frontend, not both/);
    await invalid({ Definition: definition, Exporters: [{ Type: '', Attrs: {} }] }, /Exporters\[0\]: the exporter type is empty/);
    await invalid({ Ref: 'has spaces', Definition: definition }, /SolveRequest\.Ref "has spaces"/);
    await invalid({ Definition: definition, Exporters: [{ Type: 'image', Attrs: { name: `${registry.host}/x:1`, 'no-such-attr': 'x' } }] }, /no-such-attr/);
  });

  it('an entitlement the daemon does not permit is PERMISSION_DENIED, naming it', async () => {
    await expect(client.solve({ Definition: definition, Entitlements: ['security.insecure'] })).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: expect.stringContaining('security.insecure is not permitted by this daemon (permitted: none'),
    });
  });

  it('an unknown exporter or cache type is NOT_FOUND naming the registered ones', async () => {
    await expect(client.solve({ Definition: definition, Exporters: [{ Type: 'nope', Attrs: {} }] })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: expect.stringMatching(/unknown exporter "nope" \(registered: .*image/),
    });
    await expect(client.solve({ Definition: definition, Cache: { Imports: [{ Type: 'nope', Attrs: {} }], Exports: [], ImportRefsDeprecated: [], ExportRefDeprecated: '', ExportAttrsDeprecated: {} } })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: expect.stringContaining('"nope"'),
    });
  });

  it('a source policy: DENY names the source, CONVERT rewrites it', async () => {
    const rule = (action: sourcepolicy.PolicyAction, update?: string) =>
      sourcepolicy.Rule.fromPartial({ action, selector: { identifier: `docker-image://${registry.host}/library/*` }, ...(update ? { updates: { identifier: update, attrs: {} } } : {}) });
    await expect(client.solve({ Definition: definition, SourcePolicy: { version: 1, rules: [rule(sourcepolicy.PolicyAction.DENY)] } })).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: expect.stringContaining(`source docker-image://${busybox.reference} denied by the build's source policy`),
    });
    const converted = `docker-image://${registry.host}/e2e/converted:none`;
    await expect(client.solve({ Definition: definition, SourcePolicy: { version: 1, rules: [rule(sourcepolicy.PolicyAction.CONVERT, converted)] } })).rejects.toMatchObject({
      details: expect.stringContaining('e2e/converted:none'),
    });
  });

  it('200 randomly corrupted Solve requests (fixed seed): each a clean status, the daemon still serving', async () => {
    const good = Buffer.from(control.SolveRequest.encode(control.SolveRequest.fromPartial({ Definition: definition })).finish());
    let seed = 11;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const codes = new Map<number, number>();
    for (let i = 0; i < 200; i++) {
      const bytes = Buffer.from(good);
      for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
      const r = await rawUnary(`unix://${socket}`, '/moby.buildkit.v1.Control/Solve', bytes.subarray(0, Math.max(1, Math.floor(bytes.length * (0.5 + rand() / 2)))));
      codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
    }
    const clean = [grpc.status.OK, grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND, grpc.status.PERMISSION_DENIED, grpc.status.UNIMPLEMENTED, grpc.status.UNKNOWN];
    expect([...codes.keys()].filter((c) => !clean.includes(c)), JSON.stringify([...codes])).toEqual([]);
    expect(codes.get(grpc.status.INVALID_ARGUMENT) ?? 0).toBeGreaterThan(100);
    expect((await client.info()).buildkitVersion?.package).toBe('@bkt/server');
  }, 300_000);
});

describe('DiskUsage and Prune', () => {
  it('DiskUsage: the store usage records (as bkt du lists them), filtered as buildctl du --filter', async () => {
    const { record } = await client.diskUsage();
    expect(record.length).toBeGreaterThan(0);
    const cli = await bkt(['du', '--root', root, '--verbose'], { cwd: work });
    expect(cli.code, cli.stderr).toBe(0);
    const cliIds = [...cli.stdout.matchAll(/^ID:\s+(\S+)/gm)].map((m) => m[1]).sort();
    expect(record.map((r) => r.ID).sort()).toEqual(cliIds);
    for (const r of record) {
      expect(r.CreatedAt).toBeDefined();
      expect(r.RecordType).not.toBe('');
    }
    const first = record[0]!;
    expect((await client.diskUsage([`id==${first.ID}`])).record.map((r) => r.ID)).toEqual([first.ID]);
    const types = new Set(record.map((r) => r.RecordType));
    const type = [...types][0]!;
    expect((await client.diskUsage([`type==${type}`])).record.every((r) => r.RecordType === type)).toBe(true);
    // Two filters: either may match.
    const two = await client.diskUsage([`id==${first.ID}`, `type==${type}`]);
    expect(two.record.length).toBe(record.filter((r) => r.ID === first.ID || r.RecordType === type).length);
    await expect(client.diskUsage(['type~=('])).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('DiskUsageRequest.filter "type~=("') });
  });

  it('Prune: a filter nothing matches, or space limits already met, remove nothing; prune --all streams each removed record, gone from DiskUsage', async () => {
    expect(await client.prune({ filter: ['type==no-such-type'], all: true })).toEqual([]);
    // Within the space limits (at most a petabyte used, one byte free), nothing goes.
    expect(await client.prune({ all: true, maxUsedSpace: 1e15 })).toEqual([]);
    expect(await client.prune({ all: true, minFreeSpace: 1 })).toEqual([]);
    await expect(client.prune({ maxUsedSpace: -1 })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('PruneRequest.maxUsedSpace') });
    const before = (await client.diskUsage()).record;
    const removed = await client.prune({ all: true });
    expect(removed.length).toBeGreaterThan(0);
    const after = new Set((await client.diskUsage()).record.map((r) => r.ID));
    for (const r of removed) expect(after.has(r.ID), r.ID).toBe(false);
    expect(after.size).toBe(before.length - removed.length);
    // What stays is in use (the local image store's named images are pinned).
    for (const r of (await client.diskUsage()).record) expect(r.InUse, r.ID).toBe(true);
  });
});

describe('ListenBuildHistory and UpdateBuildHistory', () => {
  it('EarlyExit: the recorded builds as COMPLETE events; Ref selects one', async () => {
    const events = await client.collect(client.listenBuildHistory({ EarlyExit: true }));
    const refs = events.map((e) => e.record!.Ref);
    expect(refs).toContain('e2edaemonbuild0000000001');
    const one = events.find((e) => e.record!.Ref === 'e2edaemonbuild0000000001')!;
    expect(one.type).toBe(control.BuildHistoryEventType.COMPLETE);
    expect(one.record!.numTotalSteps).toBeGreaterThan(0);
    expect(one.record!.ExporterResponse['containerimage.digest']).toMatch(/^sha256:/);
    expect(one.record!.Exporters[0]?.Type).toBe('image');
    expect(one.record!.CompletedAt).toBeDefined();
    const only = await client.collect(client.listenBuildHistory({ EarlyExit: true, Ref: 'e2edaemonbuild0000000001' }));
    expect(only.map((e) => e.record!.Ref)).toEqual(['e2edaemonbuild0000000001']);
    expect(await client.collect(client.listenBuildHistory({ EarlyExit: true, ActiveOnly: true }))).toEqual([]);
  });

  it('a listener sees a new build STARTED, then COMPLETE', async () => {
    const stream = client.listenBuildHistory({});
    const seen: control.BuildHistoryEvent[] = [];
    const complete = new Promise<void>((resolve, reject) => {
      stream.on('data', (e: control.BuildHistoryEvent) => {
        seen.push(e);
        if (e.record?.Ref === 'e2edaemonlive00000000001' && e.type === control.BuildHistoryEventType.COMPLETE) resolve();
      });
      stream.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? undefined : reject(e)));
    });
    await new Promise((r) => setTimeout(r, 300));
    await client.solve({ Ref: 'e2edaemonlive00000000001', Definition: definition });
    await complete;
    stream.cancel();
    const mine = seen.filter((e) => e.record?.Ref === 'e2edaemonlive00000000001').map((e) => e.type);
    expect(mine).toEqual([control.BuildHistoryEventType.STARTED, control.BuildHistoryEventType.COMPLETE]);
  });

  it('an Internal build runs but is not recorded', async () => {
    const r = await client.solve({ Ref: 'e2edaemoninternal0000001', Definition: definition, Internal: true, Exporters: [imageExporter(`${registry.host}/e2e/internal:v1`)] });
    expect(r.ExporterResponse['containerimage.digest']).toMatch(/^sha256:/);
    const refs = (await client.collect(client.listenBuildHistory({ EarlyExit: true }))).map((e) => e.record!.Ref);
    expect(refs).toContain('e2edaemonbuild0000000001');
    expect(refs).not.toContain('e2edaemoninternal0000001');
  });

  it('UpdateBuildHistory: Finalize of a finished build; an unknown ref is NOT_FOUND, an empty one INVALID_ARGUMENT', async () => {
    await expect(client.updateBuildHistory({ Ref: 'e2edaemonbuild0000000001', Finalize: true })).resolves.toEqual({});
    await expect(client.updateBuildHistory({ Ref: 'nope', Finalize: true })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await expect(client.updateBuildHistory({ Finalize: true })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });
});
