#!/usr/bin/env node
/**
 * bench/image: image export, push and pull, each timed against a peer on the
 * same data in the same run (ratio = bkt / peer; lower is better):
 *
 *   layer tar    the tar of a 2,000-file / 51 MB tree (bench/compare's copy-2000
 *           context) and its sha256, as `-t` makes a layer's diff id  vs
 *           `tar -c | sha256sum` of the same tree
 *   -t layer     that tree's uncompressed layer written into the content store
 *           (what `bkt build -t` pays)  vs  `tar -c | tee FILE | sha256sum`
 *   export  bkt's new layer (tar of a snapshot + gzip into the content store)
 *           of a 200 MB tree  vs  `tar -c | gzip` of the same tree
 *   push    the image exporter pushing the image to a local docker-registry
 *           vs  `skopeo copy oci:… docker://…` of the same image
 *   pull+unpack  the docker-image source resolving the image and making its
 *           snapshot (download + unpack) in an empty store  vs  `skopeo copy
 *           docker://… oci:…` then `umoci unpack` of that layout
 *
 * The layer rows run bkt and the peer interleaved and print medians; the
 * others print the best of --runs.
 *
 * Run by hand as root, after `npm run build` (it imports the packages' dist/):
 *   node bench/image/run.mjs [--mb 200] [--files 400] [--runs 3] [--only layer]
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

let storePkg, sourcePkg, exporterPkg, registryTesting, coreTesting, fsutilPkg, ociPkg;
try {
  [storePkg, sourcePkg, exporterPkg, registryTesting, coreTesting, fsutilPkg, ociPkg] = await Promise.all([
    import('@bkt/store'),
    import('@bkt/source-image'),
    import('@bkt/exporter-oci'),
    import('@bkt/registry/testing'),
    import('@bkt/core/testing'),
    import('@bkt/fsutil'),
    import('@bkt/oci'),
  ]);
} catch (err) {
  console.error(`bench/image needs the built packages: run \`npm run build\` first.\n(${err.message})`);
  process.exit(1);
}
const { Store } = storePkg;
const { ImageSource } = sourcePkg;
const { createImageExporters } = exporterPkg;
const { layerTar, snapshotLayer } = ociPkg;
const { startRegistry } = registryTesting;
const { testBuildContext } = coreTesting;
const { createHostClient } = fsutilPkg;

const { values: args } = parseArgs({
  options: {
    mb: { type: 'string', default: '200' },
    files: { type: 'string', default: '400' },
    runs: { type: 'string', default: '3' },
    only: { type: 'string' },
  },
});
const BYTES = Number(args.mb) * 1024 * 1024;
const FILES = Number(args.files);
const RUNS = Number(args.runs);

/** Half random (incompressible), half repetitive text: gzip has real work on both kinds. */
async function fillTree(dir) {
  const per = Math.floor(BYTES / FILES);
  const text = Buffer.from('the quick brown fox jumps over the lazy dog 0123456789\n'.repeat(Math.ceil(per / 55))).subarray(0, per);
  for (let i = 0; i < FILES; i++) {
    const sub = join(dir, `d${i % 16}`);
    await mkdir(sub, { recursive: true });
    await writeFile(join(sub, `f${i}`), i % 2 ? randomBytes(per) : text);
  }
}

/** A build context on the store, as the solver makes one: the store's records, an in-process client. */
function ctxOf(store) {
  return testBuildContext({
    buildId: 'bench',
    root: store.root,
    snapshotter: store.snapshotter,
    content: store.content,
    records: store.records,
    client: createHostClient({ storeRoot: store.root }),
  }).ctx;
}

/** bench/compare's copy-2000 context: 20 directories of 100 files of 25.5 KiB (base64 of random bytes). */
async function fillCopyTree(dir) {
  for (let d = 0; d < 20; d++) {
    await mkdir(join(dir, `d${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) await writeFile(join(dir, `d${d}`, `f${f}.txt`), randomBytes(19_584).toString('base64'));
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Medians of `runs` interleaved runs of `a` and `b` (after one untimed warm-up of each). */
async function interleaved(a, b, runs) {
  await a(-1);
  await b(-1);
  const ta = [];
  const tb = [];
  for (let i = 0; i < runs; i++) {
    ta.push(await time(() => a(i)));
    tb.push(await time(() => b(i)));
  }
  return [median(ta), median(tb)];
}

async function time(fn) {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

async function best(fn) {
  let min = Infinity;
  for (let i = 0; i < RUNS; i++) min = Math.min(min, await time(() => fn(i)));
  return min;
}

function sh(cmd, argv, opts = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], ...opts });
    let err = '';
    p.stderr?.on('data', (c) => (err += c));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${argv.join(' ')}: ${err}`))));
  });
}

function row(name, bkt, peer, peerName) {
  console.log(`${name.padEnd(11)} bkt ${bkt.toFixed(0).padStart(6)} ms   ${peerName.padEnd(27)} ${peer.toFixed(0).padStart(6)} ms   ratio ${(bkt / peer).toFixed(2)}`);
}

const work = await mkdtemp(join(tmpdir(), 'bkt-bench-image-'));
const stores = [];
let registry;
try {
  const store = await Store.open(join(work, 'store'));
  stores.push(store);
  const ctx = ctxOf(store);

  // layer tar and -t layer: the copy-2000 tree as a layer over a base (as a COPY's snapshot is).
  {
    const baseM = await store.snapshotter.prepare(null);
    await mkdir(join(baseM.path, 'etc'));
    const baseSnap = await baseM.commit();
    const cm = await store.snapshotter.prepare(baseSnap);
    await fillCopyTree(join(cm.path, 'ctx'));
    const copySnap = await cm.commit();
    const dir = copySnap.layerPath();
    const runs = Math.max(RUNS, 5);
    console.log(`copy tree: 2,000 files, 51 MB; medians of ${runs} interleaved runs; load ${(await import('node:os')).loadavg()[0].toFixed(2)}`);
    const [bktTar, peerTar] = await interleaved(
      async () => {
        const h = createHash('sha256');
        for await (const c of layerTar(dir, { withOpaque: true })) h.update(c);
        h.digest('hex');
      },
      () => sh('sh', ['-c', `tar -C "${dir}" -cf - . | sha256sum > /dev/null`]),
      runs,
    );
    row('layer tar', bktTar, peerTar, 'tar -c | sha256sum');
    const [bktT, peerT] = await interleaved(
      () => snapshotLayer(copySnap, ctx, { compression: 'uncompressed', noCache: true }),
      () => sh('sh', ['-c', `tar -C "${dir}" -cf - . | tee "${join(work, 'peer.tar')}" | sha256sum > /dev/null`]),
      runs,
    );
    row('-t layer', bktT, peerT, 'tar -c | tee FILE | sha256sum');
  }
  if (args.only !== 'layer') {
    const m = await store.snapshotter.prepare(null);
    await fillTree(m.path);
    const snapshot = await m.commit();
    const layerDir = snapshot.layerPath();
    console.log(`tree: ${FILES} files, ${args.mb} MB; best of ${RUNS} runs; snapshotter ${store.snapshotter.kind}`);

    // export: a new gzip layer of the tree.
    const bktExport = await best(() => snapshotLayer(snapshot, ctx, { compression: 'gzip', noCache: true }));
    const peerExport = await best(() => sh('sh', ['-c', `tar -C "${layerDir}" -cf - . | gzip -6 > "${join(work, 'peer.tar.gz')}"`]));
    row('export', bktExport, peerExport, 'tar -c | gzip');

    // push: the image exporter vs skopeo copy of the same image from an OCI layout.
    registry = await startRegistry();
    const { exporters, close } = createImageExporters();
    const exporter = (t) => exporters.find((e) => e.type === t);
    const result = { ref: snapshot, metadata: {} };
    const layout = join(work, 'layout');
    await (await exporter('oci').resolve({ dest: layout, tar: 'false', name: 'bench:v1' })).export(result, ctx);
    // Each push goes to a registry of its own, so neither tool can mount blobs it pushed before.
    const pushRun = async (fn) => {
      const r = await startRegistry();
      try {
        return await time(() => fn(r.host));
      } finally {
        await r.stop();
      }
    };
    let bktPush = Infinity;
    let peerPush = Infinity;
    for (let i = 0; i < RUNS; i++) {
      bktPush = Math.min(bktPush, await pushRun(async (host) => {
        await (await exporter('image').resolve({ name: `${host}/bench/bkt:v1`, push: 'true', 'oci-mediatypes': 'true' })).export(result, ctx);
      }));
      peerPush = Math.min(peerPush, await pushRun((host) => sh('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${host}/bench/skopeo:v1`])));
    }
    row('push', bktPush, peerPush, 'skopeo copy oci: docker:');
    await (await exporter('image').resolve({ name: `${registry.host}/bench/bkt0:v1`, push: 'true', 'oci-mediatypes': 'true' })).export(result, ctx);
    close();

    // pull: into an empty store each run.
    const source = new ImageSource();
    const ref = `${registry.host}/bench/bkt0:v1`;
    let n = 0;
    const fresh = async () => {
      const s = await Store.open(join(work, `pull-store-${n++}`));
      stores.push(s);
      return ctxOf(s);
    };
    // The public path a build takes: resolve (manifest, config), then the snapshot (download + unpack).
    const pulls = [];
    for (let i = 0; i < RUNS; i++) {
      const c = await fresh();
      pulls.push(
        await time(async () => {
          const instance = await source.resolve(source.identify('docker-image', ref, { 'image.resolvemode': 'pull' }), c);
          await instance.cacheKey(c);
          await instance.snapshot(c);
        }),
      );
    }
    const peerPull = await best(async (i) => {
      const dir = join(work, `skopeo-pull-${i}`);
      await sh('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${dir}:v1`]);
      await sh('umoci', ['unpack', '--image', `${dir}:v1`, join(work, `umoci-bundle-${i}`)]);
    });
    row('pull+unpack', Math.min(...pulls), peerPull, 'skopeo copy + umoci unpack');
    source.close();
  }
} finally {
  for (const s of stores) await s.close().catch(() => undefined);
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
}
