/**
 * The Control API's gaps closed (issue 11), through a grpc-js client from the
 * generated stubs against the built bktd, real runc and a real registry:
 * UpdateBuildHistory pins (a pinned build outlives the history limits and a
 * prune --all) and deletes (DELETED events; a running build refused);
 * FrontendInputs build a Dockerfile with no session at all; a SourcePolicy
 * applies to the images a Dockerfile's FROM names.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { control, sourcepolicy, type pb } from '@bkt/api';
import { image, mkfile, scratch } from '@bkt/llb';
import { pushBusyboxImage, skopeoInspect, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { bkt, removeDir, tempDir } from '../helpers.js';
import { Control, startBktd, type RunningDaemon } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;
let socket: string;
let daemon: RunningDaemon;
let client: Control;
/** Every ListenBuildHistory event since the daemon started. */
const events: control.BuildHistoryEvent[] = [];
let listener: grpc.ClientReadableStream<control.BuildHistoryEvent>;

/** Output past the first MiB of a build goes to its log file, a store record (`history/<ref>`). */
const BIG_OUTPUT = 'yes logged-line | head -c 1300000; echo';

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('daemon-history');
  // Two builds kept; no GC between builds, so only the prunes the tests ask for remove anything.
  await writeFile(join(work, 'bktd.config.json'), JSON.stringify({ history: { maxEntries: 2 }, gc: false }));
  socket = join(work, 'bktd.sock');
  daemon = await startBktd(['--addr', `unix://${socket}`, '--root', join(work, 'root'), '--config', join(work, 'bktd.config.json')], { cwd: work });
  client = new Control(`unix://${socket}`);
  listener = client.listenBuildHistory({});
  listener.on('data', (e: control.BuildHistoryEvent) => events.push(e));
  listener.on('error', () => {});
});

afterAll(async () => {
  listener?.cancel();
  client?.close();
  if (daemon) expect(await daemon.stop(), daemon.output()).toBe(0);
  await registry?.stop();
  if (work) await removeDir(work);
});

const run = (shell: string) => image(busybox.reference).run({ shell }).root().marshal();
const recorded = async () => (await client.collect(client.listenBuildHistory({ EarlyExit: true }))).map((e) => e.record!);
const seen = (type: control.BuildHistoryEventType, ref: string) => events.some((e) => e.type === type && e.record?.Ref === ref);

/** Resolves once the listener has seen an event of `type` for `ref` (and `match`): the daemon sends it right after the call that causes it. */
async function eventFor(type: control.BuildHistoryEventType, ref: string, match: (e: control.BuildHistoryEvent) => boolean = () => true): Promise<control.BuildHistoryEvent> {
  for (let i = 0; i < 100; i++) {
    const e = events.find((x) => x.type === type && x.record?.Ref === ref && match(x));
    if (e) return e;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no ${control.BuildHistoryEventType[type]} event for ${ref}; events: ${events.map((e) => `${control.BuildHistoryEventType[e.type]} ${e.record?.Ref}`).join(', ')}`);
}

describe('UpdateBuildHistory: Pinned', () => {
  it('a pinned build survives the history trim and a prune --all keeps its logs; unpinned, the next build drops it (DELETED)', async () => {
    await client.solve({ Ref: 'e2epinned000000000000001', Definition: run(`${BIG_OUTPUT} pinned`) });
    expect((await client.diskUsage()).record.map((r) => r.ID)).toContain('history/e2epinned000000000000001');
    await client.updateBuildHistory({ Ref: 'e2epinned000000000000001', Pinned: true });
    // Listeners get the finished build's record again, pinned.
    await eventFor(control.BuildHistoryEventType.COMPLETE, 'e2epinned000000000000001', (e) => e.record!.pinned);
    const complete = events.filter((e) => e.type === control.BuildHistoryEventType.COMPLETE && e.record?.Ref === 'e2epinned000000000000001');
    expect(complete.map((e) => e.record!.pinned)).toEqual([false, true]);

    for (const ref of ['e2eunpinned0000000000001', 'e2eunpinned0000000000002', 'e2eunpinned0000000000003']) await client.solve({ Ref: ref, Definition: run('echo small') });
    // maxEntries 2: of the unpinned builds the newest two stay; the pinned one is neither counted nor dropped.
    const kept = await recorded();
    expect(kept.map((r) => [r.Ref, r.pinned]).sort()).toEqual([
      ['e2epinned000000000000001', true],
      ['e2eunpinned0000000000002', false],
      ['e2eunpinned0000000000003', false],
    ]);
    await eventFor(control.BuildHistoryEventType.DELETED, 'e2eunpinned0000000000001');

    // prune --all removes every unused record, but not the pinned build's logs.
    const removed = (await client.prune({ all: true })).map((r) => r.ID);
    expect(removed.length).toBeGreaterThan(0);
    expect(removed).not.toContain('history/e2epinned000000000000001');
    expect((await client.diskUsage()).record.find((r) => r.ID === 'history/e2epinned000000000000001')).toMatchObject({ InUse: true, RecordType: 'build.logs' });

    await client.updateBuildHistory({ Ref: 'e2epinned000000000000001', Pinned: false });
    await client.solve({ Ref: 'e2eunpinned0000000000004', Definition: run('echo small') });
    expect((await recorded()).map((r) => r.Ref).sort()).toEqual(['e2eunpinned0000000000003', 'e2eunpinned0000000000004']);
    await eventFor(control.BuildHistoryEventType.DELETED, 'e2epinned000000000000001');
    expect((await client.diskUsage()).record.map((r) => r.ID)).not.toContain('history/e2epinned000000000000001');
  });
});

describe('UpdateBuildHistory: Delete', () => {
  it("removes the build's record and logs and emits DELETED; Status no longer finds it", async () => {
    await client.solve({ Ref: 'e2edeleted00000000000001', Definition: run(`${BIG_OUTPUT} deleted`) });
    expect((await client.diskUsage()).record.map((r) => r.ID)).toContain('history/e2edeleted00000000000001');
    expect(seen(control.BuildHistoryEventType.DELETED, 'e2edeleted00000000000001')).toBe(false);
    await expect(client.updateBuildHistory({ Ref: 'e2edeleted00000000000001', Delete: true })).resolves.toEqual({});
    const deleted = await eventFor(control.BuildHistoryEventType.DELETED, 'e2edeleted00000000000001');
    expect(deleted.record!.Ref).toBe('e2edeleted00000000000001');
    expect((await recorded()).map((r) => r.Ref)).not.toContain('e2edeleted00000000000001');
    expect((await client.diskUsage()).record.map((r) => r.ID)).not.toContain('history/e2edeleted00000000000001');
    await expect(client.status('e2edeleted00000000000001')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await expect(client.updateBuildHistory({ Ref: 'e2edeleted00000000000001', Delete: true })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it('a running build is INVALID_ARGUMENT and stays recorded', async () => {
    const ref = 'e2erunning00000000000001';
    const call = client.raw.solve(control.SolveRequest.fromPartial({ Ref: ref, Definition: run('sleep 60') }), () => {});
    try {
      await eventFor(control.BuildHistoryEventType.STARTED, ref);
      await expect(client.updateBuildHistory({ Ref: ref, Delete: true })).rejects.toMatchObject({
        code: grpc.status.INVALID_ARGUMENT,
        details: `build ${ref} is still running; its record can be deleted once it ends`,
      });
      expect((await recorded()).find((r) => r.Ref === ref)).toBeDefined();
    } finally {
      call.cancel();
    }
    await eventFor(control.BuildHistoryEventType.COMPLETE, ref);
  });
});

describe('bkt history pin / unpin / rm against the daemon (--addr)', () => {
  it("pins, unpins and removes the daemon's builds, named by a prefix, through the built CLI", async () => {
    const ref = 'e2ecliupdate000000000001';
    await client.solve({ Ref: ref, Definition: run('echo from-the-cli-test') });
    const cli = (...args: string[]) => bkt(['history', ...args, '--addr', `unix://${socket}`], { cwd: work });
    expect(await cli('pin', 'e2ecliupd')).toMatchObject({ code: 0, stdout: `${ref}\n` });
    expect((await recorded()).find((r) => r.Ref === ref)?.pinned).toBe(true);
    expect(JSON.parse((await cli('ls', '--format', 'json')).stdout.split('\n').find((l) => l.includes(ref))!)).toMatchObject({ ref, pinned: true });
    expect(await cli('unpin', ref)).toMatchObject({ code: 0 });
    expect((await recorded()).find((r) => r.Ref === ref)?.pinned).toBe(false);
    const missing = await cli('rm', ref, 'e2enosuchbuild');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no build "e2enosuchbuild"');
    expect(await cli('rm', ref)).toMatchObject({ code: 0, stdout: `${ref}\n` });
    await eventFor(control.BuildHistoryEventType.DELETED, ref);
    expect((await recorded()).map((r) => r.Ref)).not.toContain(ref);
  });
});

describe('Solve FrontendInputs', () => {
  const def = (path: string, content: string): pb.Definition => scratch().file(mkfile(path, 0o644, content)).marshal();

  it('builds the Dockerfile of the dockerfile input over the context input, with no session and no client directory', async () => {
    const ref = 'e2einputs000000000000001';
    const status = client.status(ref);
    const name = `${registry.host}/e2e/inputs:v1`;
    const r = await client.solve({
      Ref: ref,
      Frontend: 'dockerfile.v0',
      FrontendInputs: {
        dockerfile: def('/Dockerfile', `FROM ${busybox.reference}\nENV FROM_INPUT=yes\nCOPY msg.txt /msg.txt\nRUN cat /msg.txt\n`),
        context: def('/msg.txt', 'the context came as a frontend input\n'),
      },
      Exporters: [{ Type: 'image', Attrs: { name, push: 'true' } }],
    });
    const logs = Buffer.concat((await status).flatMap((s) => s.logs.map((l) => l.msg))).toString();
    expect(logs).toContain('the context came as a frontend input');
    const info = (await skopeoInspect(name)) as { Digest: string; Env: string[]; Layers: string[] };
    expect(info.Digest).toBe(r.ExporterResponse['containerimage.digest']);
    expect(info.Env).toContain('FROM_INPUT=yes');
    expect(info.Layers[0]).toBe(busybox.layer.digest);
  });

  it('an input is a named context (context:NAME=input:INPUT); inputs without a Frontend are INVALID_ARGUMENT naming them', async () => {
    const ref = 'e2einputs000000000000002';
    const status = client.status(ref);
    await client.solve({
      Ref: ref,
      Frontend: 'dockerfile.v0',
      FrontendAttrs: { 'context:base': 'input:base-image' },
      FrontendInputs: {
        dockerfile: def('/Dockerfile', 'FROM base\nRUN cat /marker\n'),
        'base-image': image(busybox.reference).file(mkfile('/marker', 0o644, 'the named context input\n')).marshal(),
      },
    });
    expect(Buffer.concat((await status).flatMap((s) => s.logs.map((l) => l.msg))).toString()).toContain('the named context input');
    await expect(client.solve({ Definition: run('true'), FrontendInputs: { context: def('/x', 'x') } })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'SolveRequest.FrontendInputs (context) are read by a Frontend; this request names none',
    });
  });
});

describe('SourcePolicy on a frontend build', () => {
  const dockerfile = (text: string) => ({ dockerfile: scratch().file(mkfile('/Dockerfile', 0o644, text)).marshal() });
  const rule = (action: sourcepolicy.PolicyAction, update?: string) =>
    sourcepolicy.Rule.fromPartial({ action, selector: { identifier: `docker-image://${registry.host}/library/*` }, ...(update ? { updates: { identifier: update, attrs: {} } } : {}) });

  it('a DENY of the image a Dockerfile FROM names fails the build PERMISSION_DENIED, naming the image and the line', async () => {
    const err = await client
      .solve({ Frontend: 'dockerfile.v0', FrontendInputs: dockerfile(`FROM ${busybox.reference}\nRUN echo never-runs\n`), SourcePolicy: { version: 1, rules: [rule(sourcepolicy.PolicyAction.DENY)] } })
      .catch((e: grpc.ServiceError) => e);
    expect(err).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    expect((err as grpc.ServiceError).details).toContain(`source docker-image://${busybox.reference} denied by the build's source policy (rule 0: docker-image://${registry.host}/library/*)`);
    expect((err as grpc.ServiceError).details).toMatch(/^Dockerfile:1:1: /);
  });

  it('a CONVERT replaces the image the FROM resolves', async () => {
    const converted = `docker-image://${registry.host}/e2e/converted:none`;
    const err = await client
      .solve({ Frontend: 'dockerfile.v0', FrontendInputs: dockerfile(`FROM ${busybox.reference}\n`), SourcePolicy: { version: 1, rules: [rule(sourcepolicy.PolicyAction.CONVERT, converted)] } })
      .catch((e: grpc.ServiceError) => e);
    // The converted image does not exist: the build fails resolving it, by its new name.
    expect((err as grpc.ServiceError).details).toContain('e2e/converted:none');
    expect((err as grpc.ServiceError).details).not.toContain('denied');
  });
});
