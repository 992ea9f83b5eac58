/**
 * bktd killed with SIGKILL in the middle of a build (issue 11): the store
 * it leaves opens — a new daemon starts on it and stops the container the
 * killed one left running (whose root was never mounted on the host) — the interrupted build
 * is in the history as failed (Status replays its output), and the new
 * daemon builds; once it stops, no mount and no runc container is left.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { control } from '@bkt/api';
import { image } from '@bkt/llb';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { Control, mountsUnder, runcContainers, startBktd, stepStarted } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('daemon-crash');
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

it('a kill -9 mid-build leaves a store that opens, and the interrupted build shows as failed in history after restart', async () => {
  const root = join(work, 'root');
  const socket = join(work, 'bktd.sock');
  const daemon = await startBktd(['--addr', `unix://${socket}`, '--root', root], { cwd: work });
  const client = new Control(`unix://${socket}`);
  const ref = 'e2ecrashkilledbuild00001';
  const solving = client.solve({ Ref: ref, Definition: image(busybox.reference).run({ shell: 'echo started; sleep 120' }).root().marshal() }).then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  );
  await stepStarted(client, ref, 'sleep 120', 'started');
  // The step's container runs: the killed daemon leaves it behind. Its root is mounted in the
  // container's own mount namespace, never on the host: the kill leaves no mount of it there.
  expect(await runcContainers(root)).not.toEqual([]);
  await daemon.stop('SIGKILL');
  expect(daemon.proc.signalCode).toBe('SIGKILL');
  expect(mountsUnder(root)).toEqual([]);
  expect((await solving)?.code).toBe(grpc.status.UNAVAILABLE);
  client.close();

  const again = await startBktd(['--addr', `unix://${socket}`, '--root', root], { cwd: work });
  const c2 = new Control(`unix://${socket}`);
  try {
    // The container of the killed daemon is gone.
    expect(await runcContainers(root)).toEqual([]);
    const events = await c2.collect(c2.listenBuildHistory({ EarlyExit: true, Ref: ref }));
    expect(events.map((e) => e.type)).toEqual([control.BuildHistoryEventType.COMPLETE]);
    const record = events[0]!.record!;
    expect(record.error?.code, JSON.stringify(record.error)).toBe(grpc.status.INTERNAL);
    expect(record.error?.message).toMatch(/interrupted/);
    expect(record.CompletedAt).toBeDefined();
    // Status replays what the build printed before the kill.
    const replayed = await c2.status(ref);
    expect(Buffer.concat(replayed.flatMap((r) => r.logs.map((l) => l.msg))).toString()).toContain('started');
    // The store works: a build runs.
    const r = await c2.solve({ Definition: image(busybox.reference).run({ shell: 'echo after the crash > /after' }).root().marshal() });
    expect(r).toEqual({ ExporterResponse: {} });
  } finally {
    c2.close();
    expect(await again.stop(), again.output()).toBe(0);
  }
  expect(mountsUnder(root)).toEqual([]);
  expect(await runcContainers(root)).toEqual([]);
});
