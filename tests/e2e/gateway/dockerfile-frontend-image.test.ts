/**
 * BuildKit's own Dockerfile frontend run by bkt as a frontend image: where
 * the machine has its `dockerfile-frontend` binary (on PATH, or named by
 * $BKT_DOCKERFILE_FRONTEND), the test packs it into an image (one layer,
 * the labels of docker/dockerfile's image), pushes it to a test registry,
 * and builds a sample of the Dockerfile corpus through `# syntax=` on bkt;
 * each result's tree equals bkt's own frontend's. Skipped, with the reason
 * in the suite name, where the binary is absent (it is not installed on this
 * project's machines, which cannot pull docker/dockerfile either).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestOf, MediaType, type Descriptor } from '@bkt/oci';
import { RegistryClient, staticCredentials } from '@bkt/registry';
import { bkt, describeTree, removeDir, tempDir } from '../helpers.js';
import { loadCases, prepareCase, type Case } from '../dockerfile/lib/corpus.js';
import { startFixtures, type Fixtures } from '../dockerfile/lib/fixtures.js';

function frontendBinary(): string | undefined {
  const given = process.env.BKT_DOCKERFILE_FRONTEND;
  if (given) return existsSync(given) ? given : undefined;
  try {
    return execFileSync('sh', ['-c', 'command -v dockerfile-frontend'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

const BINARY = frontendBinary();
const suite = BINARY
  ? "BuildKit's Dockerfile frontend as a frontend image on bkt"
  : "BuildKit's Dockerfile frontend as a frontend image on bkt (skipped: no dockerfile-frontend binary on PATH and $BKT_DOCKERFILE_FRONTEND unset)";

/** Cases with nothing but a Dockerfile, a context and the busybox base (no secrets, ssh, git, http or named contexts). */
const SAMPLE = ['01-from-scratch', '02-stage-by-name', '06-arg-global-and-stage', '10-env-forms', '11-run-shell-and-exec', '12-run-heredoc'];

/** Pushes `binary` as `/bin/dockerfile-frontend` in a one-layer image with docker/dockerfile's labels. */
async function pushFrontendBinary(host: string, binary: string): Promise<string> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  const mtime = new Date('2024-01-01T00:00:00Z');
  await new Promise<void>((resolve, reject) => pack.entry({ name: 'bin/', type: 'directory', mode: 0o755, mtime }, (e) => (e ? reject(e) : resolve())));
  await new Promise<void>((resolve, reject) =>
    pack.entry({ name: 'bin/dockerfile-frontend', type: 'file', mode: 0o755, mtime }, readFileSync(binary), (e) => (e ? reject(e) : resolve())),
  );
  pack.finalize();
  await ended;
  const raw = Buffer.concat(chunks);
  const gz = gzipSync(raw, { level: 1 });
  const layer: Descriptor = { mediaType: MediaType.OciLayerGzip, digest: digestOf(gz), size: gz.length };
  const config = Buffer.from(
    JSON.stringify({
      architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      os: 'linux',
      config: {
        Entrypoint: ['/bin/dockerfile-frontend'],
        Labels: {
          'moby.buildkit.frontend.network.none': 'true',
          'moby.buildkit.frontend.caps': 'moby.buildkit.frontend.inputs,moby.buildkit.frontend.subrequests,moby.buildkit.frontend.contexts',
        },
      },
      rootfs: { type: 'layers', diff_ids: [digestOf(raw)] },
    }),
  );
  const configDesc: Descriptor = { mediaType: MediaType.OciConfig, digest: digestOf(config), size: config.length };
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers: [layer] }));
  const client = new RegistryClient({ credentials: staticCredentials({}) });
  try {
    const target = `${host}/e2e/dockerfile-frontend`;
    await client.pushBlob(target, layer, gz);
    await client.pushBlob(target, configDesc, config);
    await client.putManifest(`${target}:1`, manifest);
    return `${target}:1`;
  } finally {
    client.close();
  }
}

describe.skipIf(!BINARY)(suite, () => {
  let work: string;
  let fixtures: Fixtures;
  let frontend: string;
  let cases: Case[];

  beforeAll(async () => {
    cases = (await loadCases()).filter((c) => SAMPLE.includes(c.name));
    fixtures = await startFixtures((await import('../dockerfile/lib/corpus.js')).CASES_DIR, cases);
    frontend = await pushFrontendBinary(fixtures.registry.host, BINARY!);
    work = await tempDir('gateway-dockerfile-frontend');
  });

  afterAll(async () => {
    await fixtures?.stop();
    if (work) await removeDir(work);
  });

  for (const name of SAMPLE) {
    it(`${name}: the result through # syntax= equals bkt's own frontend's`, async () => {
      const c = cases.find((x) => x.name === name)!;
      const trees: string[][] = [];
      for (const via of ['builtin', 'syntax'] as const) {
        const prepared = await prepareCase(c, join(work, `${name}-${via}`), { base: fixtures.base.reference, registry: fixtures.registry.host });
        if (via === 'syntax') await writeFile(prepared.dockerfile, `# syntax=${frontend}\n${await readFile(prepared.dockerfile, 'utf8')}`);
        const out = join(work, `${name}-${via}-out`);
        await mkdir(out);
        const args = Object.entries(c.spec.args ?? {}).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]);
        const r = await bkt(['build', '--root', join(work, `store-${via}`), '-f', prepared.dockerfile, ...args, ...(c.spec.target ? ['--target', c.spec.target] : []), '-o', out, prepared.contextDir], { cwd: work, timeoutMs: 170_000 });
        expect(r.code, r.stderr).toBe(0);
        trees.push(await describeTree(out));
      }
      expect(trees[1]).toEqual(trees[0]);
    });
  }
});
