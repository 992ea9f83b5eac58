import { mkdir, mkdtemp, readFile, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BuildContext, Snapshot } from '@bkt/core';
import { openTestContext, type TestContext } from '@bkt/store/testing';
import localExporters from './index.js';

// The local exporter reads a result made of layers with disjoint top-level names straight from the layer
// directories; any other result it mounts. Real store snapshots, each counted when mounted.

let store: TestContext;
let work: string;
beforeEach(async () => {
  store = await openTestContext();
  work = await mkdtemp(join(tmpdir(), 'bkt-exporter-local-layers-'));
});
afterEach(async () => {
  await store.close();
  await rm(work, { recursive: true, force: true });
});

/** A committed snapshot over `parent` after `change` wrote into its tree. */
async function layer(parent: Snapshot | null, change: (root: string) => Promise<void>): Promise<Snapshot> {
  const m = await store.ctx.snapshotter.prepare(parent);
  await change(m.path);
  return m.commit();
}

async function files(root: string, entries: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(entries)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), content);
  }
}

/** `snapshot`, counting its mounts in `mounts.n`. */
function counted(snapshot: Snapshot, mounts: { n: number }): Snapshot {
  return {
    id: snapshot.id,
    parent: snapshot.parent,
    layerPath: () => snapshot.layerPath(),
    materialize: async () => snapshot.materialize?.(),
    mount: async () => {
      mounts.n++;
      return snapshot.mount();
    },
  };
}

async function exportTo(snapshot: Snapshot, dest: string, ctx: BuildContext = store.ctx): Promise<void> {
  const exporter = localExporters().exporters!.find((e) => e.type === 'local')!;
  await (await exporter.resolve({ dest })).export({ ref: snapshot, metadata: {} }, ctx);
}

/** Every path under `root` with its content (files) or `dir`, sorted. */
async function tree(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(join(root, rel))).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const st = await stat(join(root, p));
    if (st.isDirectory()) out.push(`${p}/`, ...(await tree(root, p)));
    else out.push(`${p}=${await readFile(join(root, p), 'utf8')}`);
  }
  return out;
}

describe('local export of a layered result', () => {
  it('reads layers whose top-level names are disjoint without mounting, the same tree as the mount shows', async () => {
    const base = await layer(null, (r) => files(r, { 'app/VERSION': '1\n', 'app/bin/run': 'run\n' }));
    const child = await layer(base, (r) => files(r, { 'docs/README': 'read me\n', 'greeting.txt': 'hi\n' }));
    const mounts = { n: 0 };
    await exportTo(counted(child, mounts), join(work, 'direct'));
    expect(mounts.n).toBe(0);
    const view = await child.mount();
    try {
      expect(await tree(join(work, 'direct'))).toEqual(await tree(view.path));
    } finally {
      await view.release();
    }
    expect(await tree(join(work, 'direct'))).toEqual(['app/', 'app/VERSION=1\n', 'app/bin/', 'app/bin/run=run\n', 'docs/', 'docs/README=read me\n', 'greeting.txt=hi\n']);
  });

  it('mounts a result whose layers share a top-level name: a changed file, a deletion', async () => {
    const base = await layer(null, (r) => files(r, { 'app/VERSION': '1\n', 'app/old': 'old\n' }));
    const changed = await layer(base, async (r) => {
      await writeFile(join(r, 'app/VERSION'), '2\n');
      await unlink(join(r, 'app/old'));
    });
    const mounts = { n: 0 };
    await exportTo(counted(changed, mounts), join(work, 'mounted'));
    expect(mounts.n).toBe(1);
    expect(await tree(join(work, 'mounted'))).toEqual(['app/', 'app/VERSION=2\n']);
  });

  it('mounts a single-layer result as before (the store shows it without a mount)', async () => {
    const base = await layer(null, (r) => files(r, { 'a.txt': 'a\n' }));
    const mounts = { n: 0 };
    await exportTo(counted(base, mounts), join(work, 'single'));
    expect(mounts.n).toBe(1);
    expect(await tree(join(work, 'single'))).toEqual(['a.txt=a\n']);
  });
});
