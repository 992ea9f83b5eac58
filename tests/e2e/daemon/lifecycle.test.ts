/**
 * bktd's lifecycle and configuration (issue 11): SIGTERM during a build
 * cancels it and exits 0 promptly, leaving no mount, no runc container and
 * no socket, a store that opens with the build recorded as cancelled, and a
 * new daemon on it replays that build's Status from the history and builds again; `bktd.config.ts` sets the store root, the
 * entitlements builds may ask for and a GC policy the daemon enforces after
 * builds; a bad config is refused naming the file and the key.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { control } from '@bkt/api';
import { createBkt } from '@bkt/core';
import { image } from '@bkt/llb';
import { openSolver } from '@bkt/solver';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktdFails, Control, mountsUnder, runcContainers, startBktd } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('daemon-lifecycle');
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

/** Resolves once Status of `ref` shows a started vertex whose name contains `name` and a log holding `output`. */
async function stepStarted(client: Control, ref: string, name: string, output: string): Promise<void> {
  const stream = client.raw.status({ Ref: ref });
  let started = false;
  let logs = '';
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (r: control.StatusResponse) => {
      if (r.vertexes.some((v) => v.name.includes(name) && v.started)) started = true;
      logs += Buffer.concat(r.logs.map((l) => l.msg)).toString();
      if (started && logs.includes(output)) resolve();
    });
    stream.on('error', reject);
    stream.on('end', () => reject(new Error(`build ${ref} ended before "${name}" started`)));
  });
  stream.cancel();
}

describe('SIGTERM during a build', () => {
  it('cancels the build, exits 0 promptly, and leaves a consistent store that a new daemon builds on', async () => {
    const root = join(work, 'root-sigterm');
    const socket = join(work, 'sigterm.sock');
    const daemon = await startBktd(['--addr', `unix://${socket}`, '--root', root], { cwd: work });
    const client = new Control(`unix://${socket}`);
    const ref = 'e2esigtermbuild000000001';
    const solving = client.solve({ Ref: ref, Definition: image(busybox.reference).run({ shell: 'echo started; sleep 120' }).root().marshal() }).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    await stepStarted(client, ref, 'sleep 120', 'started');
    const sentAt = Date.now();
    const code = await daemon.stop('SIGTERM');
    expect(Date.now() - sentAt).toBeLessThan(10_000);
    expect(code, daemon.output()).toBe(0);
    expect(daemon.output()).toMatch(/SIGTERM: cancelling running builds/);
    const err = await solving;
    expect(err, 'the Solve call should fail').toBeDefined();
    expect([grpc.status.CANCELLED, grpc.status.UNAVAILABLE]).toContain(err!.code);
    client.close();

    expect(mountsUnder(root)).toEqual([]);
    expect(await runcContainers(root)).toEqual([]);
    expect(existsSync(socket)).toBe(false);

    // The store opens, and its history says the build was cancelled.
    const solver = await openSolver({ root, bkt: await createBkt([]) });
    try {
      const [record] = await solver.listBuilds({ ref });
      expect(record?.status).toBe('cancelled');
    } finally {
      await solver.close();
    }

    const again = await startBktd(['--addr', `unix://${socket}`, '--root', root], { cwd: work });
    const c2 = new Control(`unix://${socket}`);
    try {
      // Status of the build from before the restart is replayed from the history: its steps and their output.
      const replayed = await c2.status(ref);
      expect(replayed.flatMap((r) => r.vertexes).some((v) => v.name.includes('sleep 120') && v.error !== '')).toBe(true);
      expect(Buffer.concat(replayed.flatMap((r) => r.logs.map((l) => l.msg))).toString()).toContain('started');
      const r = await c2.solve({ Definition: image(busybox.reference).run({ shell: 'echo again > /again' }).root().marshal() });
      expect(r).toEqual({ ExporterResponse: {} });
    } finally {
      c2.close();
      expect(await again.stop()).toBe(0);
    }
  });
});

describe('bktd.config.ts', () => {
  it('sets the root, the entitlements builds may ask for, and a GC policy enforced after builds', async () => {
    const dir = join(work, 'config');
    const socket = join(work, 'config.sock');
    await removeDir(dir);
    await (await import('node:fs/promises')).mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'bktd.config.ts'),
      [
        `export default {`,
        `  root: './store',`,
        `  entitlements: ['network.host'],`,
        // Every unused record goes after each build.
        `  gcPolicy: [{ all: true, maxUsedSpace: 1 }],`,
        `  gcInterval: '1h',`,
        `};`,
        '',
      ].join('\n'),
    );
    const daemon = await startBktd(['--addr', `unix://${socket}`, '--config', join(dir, 'bktd.config.ts')], { cwd: work });
    const client = new Control(`unix://${socket}`);
    try {
      expect(daemon.output()).toContain(`serving store ${join(dir, 'store')}`);
      const [worker] = (await client.listWorkers()).record;
      expect(worker!.GCPolicy).toEqual([{ all: true, keepDuration: 0, keepBytes: 0, filters: [], maxUsedSpace: 1, minFreeSpace: 0 }]);

      const hostNet = image(busybox.reference).run({ shell: 'echo host > /net', network: 'host' }).root().marshal();
      await expect(client.solve({ Definition: hostNet, Entitlements: ['network.host'] })).resolves.toEqual({ ExporterResponse: {} });
      await expect(client.solve({ Definition: hostNet, Entitlements: ['security.insecure'] })).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });

      // After the build, the GC removes every record no build uses.
      let left: control.UsageRecord[] = [];
      for (let i = 0; i < 100; i++) {
        left = (await client.diskUsage()).record.filter((r) => !r.InUse);
        if (left.length === 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(left.map((r) => `${r.ID} ${r.RecordType}`)).toEqual([]);
      expect(existsSync(join(dir, 'store/metadata.db'))).toBe(true);
    } finally {
      client.close();
      expect(await daemon.stop(), daemon.output()).toBe(0);
    }
  });

  it('a bad config is refused at start, naming the file and the key', async () => {
    const file = join(work, 'bad.config.ts');
    await writeFile(file, `export default { rooot: '/x' };\n`);
    const r = await bktdFails(['--config', file, '--addr', `unix://${join(work, 'bad.sock')}`], work);
    expect(r.code).toBe(1);
    expect(r.output).toContain(`${file}: unknown key "rooot"`);
    await writeFile(file, `export default { root: './r', gcPolicy: [{ maxUsedSpace: 'lots' }] };\n`);
    const r2 = await bktdFails(['--config', file, '--addr', `unix://${join(work, 'bad.sock')}`], work);
    expect(r2.code).toBe(1);
    expect(r2.output).toContain('gcPolicy[0].maxUsedSpace: "lots" is not a size');
    // Nothing was created for the refused daemon.
    expect(existsSync(join(work, 'r'))).toBe(false);
  });
});
