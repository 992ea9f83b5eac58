/**
 * Issue 12 (gateway half) through the built CLI: a frontend image — a Node
 * program speaking LLBBridge over its stdio, in an image of the host's node
 * binary and the libraries ldd names, pushed to a test registry — builds
 * through `gateway.v0` (`--frontend gateway.v0 --opt source=IMAGE`) and
 * through a Dockerfile's `# syntax=IMAGE`, daemonless and through bktd. It
 * reads a context file with ReadFile, solves a sub-graph, and returns a
 * result with an image config. A frontend asking for host networking or
 * insecure exec without the client's entitlement is refused, naming it.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skopeoInspect, startRegistry, type RegistryServer } from '@bkt/testkit';
import { bkt, removeDir, tempDir } from '../helpers.js';
import { startBktd, runcContainers, mountsUnder, type RunningDaemon } from '../daemon/lib.js';
import { pushFrontendImage, type FrontendImage } from './lib.js';

let registry: RegistryServer;
let frontend: FrontendImage;
let work: string;
let context: string;

beforeAll(async () => {
  registry = await startRegistry();
  frontend = await pushFrontendImage(registry.host, 'e2e/frontend', '1');
  work = await tempDir('gateway');
  context = join(work, 'context');
  await mkdir(context);
  await writeFile(join(context, 'message.txt'), 'hello from the context\n');
  await writeFile(join(context, 'other.txt'), 'x\n');
  await writeFile(join(context, "Dockerfile"), "FROM scratch\nCOPY message.txt /\n");
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

const syntaxDockerfile = () => `# syntax=${frontend.reference}\nFROM scratch\nCOPY message.txt /\n`;

/** The tree the test frontend produced, checked file by file. */
async function expectFrontendOutput(out: string, opts: { dockerfile: string; extraOpts?: Record<string, string> }) {
  expect(await readFile(join(out, 'greeting.txt'), 'utf8')).toBe('frontend says: HELLO FROM THE CONTEXT\n');
  expect(await readFile(join(out, 'copied.txt'), 'utf8')).toBe('hello from the context\n');
  expect(await readFile(join(out, 'dockerfile-seen.txt'), 'utf8')).toBe(opts.dockerfile);
  expect((await readFile(join(out, 'context-entries.txt'), 'utf8')).split('\n').filter(Boolean)).toEqual(['message.txt', 'other.txt']);
  const env = JSON.parse(await readFile(join(out, 'env.json'), 'utf8')) as {
    product: string;
    session: boolean;
    workers: number;
    frontendOps: number;
    caps: number;
    interfaces: string[];
    opts: Record<string, string>;
  };
  // The frontend's container has no network: loopback only.
  expect(env.interfaces).toEqual(['lo']);
  expect(env.product).toBe('bkt');
  expect(env.session).toBe(true);
  expect(env.workers).toBeGreaterThan(0);
  expect(env.frontendOps).toBeGreaterThan(0); // its own definition at /run/config/buildkit/metadata/frontend.bin
  expect(env.caps).toBeGreaterThan(5);
  for (const [k, v] of Object.entries(opts.extraOpts ?? {})) expect(env.opts[k]).toBe(v);
}

describe('a frontend image, daemonless', () => {
  it('gateway.v0 --opt source=IMAGE: reads a context file, solves its sub-graph, returns an image config', async () => {
    const root = join(work, 'store-gw');
    const out = join(work, 'out-gw');
    const pushed = `${registry.host}/e2e/result:gw`;
    const r = await bkt(
      ['build', '--root', root, '--progress', 'plain', '--frontend', 'gateway.v0', '--opt', `source=${frontend.reference}`, '--opt', 'custom=yes', '--output', `type=local,dest=${out}`, '--output', `type=image,name=${pushed},push=true`, context],
      { cwd: work, timeoutMs: 170_000 },
    );
    expect(r.stderr).not.toContain('ERROR');
    expect(r.code, r.stderr).toBe(0);
    await expectFrontendOutput(out, { dockerfile: await readFile(join(context, 'Dockerfile'), 'utf8'), extraOpts: { source: frontend.reference, custom: 'yes' } });
    // The image config the frontend returned (containerimage.config) is the pushed image's.
    const info = (await skopeoInspect(pushed)) as { Labels: Record<string, string>; Env: string[] };
    expect(info.Labels['built-by']).toBe('bkt-e2e-test-frontend');
    expect(info.Env).toContain('FROM_FRONTEND=1');
  });

  it('# syntax=IMAGE forwards the Dockerfile build to the image, with cmdline and the Dockerfile', async () => {
    const ctx = join(work, 'ctx-syntax');
    await mkdir(ctx);
    await writeFile(join(ctx, 'message.txt'), 'hello from the context\n');
    await writeFile(join(ctx, 'other.txt'), 'x\n');
    await writeFile(join(ctx, 'Dockerfile'), syntaxDockerfile());
    const out = join(work, 'out-syntax');
    const r = await bkt(['build', '--root', join(work, 'store-syntax'), '--progress', 'plain', '--output', `type=local,dest=${out}`, ctx], { cwd: work, timeoutMs: 170_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`# syntax= ${frontend.reference}: forwarding the build to gateway.v0`);
    await expectFrontendOutput(out, { dockerfile: syntaxDockerfile(), extraOpts: { source: frontend.reference, cmdline: frontend.reference, filename: 'Dockerfile' } });
  });

  it('# syntax=docker/dockerfile:1 builds with the built-in frontend and says so', async () => {
    const ctx = join(work, 'ctx-official');
    await mkdir(ctx);
    await writeFile(join(ctx, 'message.txt'), 'built in\n');
    await writeFile(join(ctx, 'Dockerfile'), '# syntax=docker/dockerfile:1\nFROM scratch\nCOPY message.txt /\n');
    const out = join(work, 'out-official');
    const r = await bkt(['build', '--root', join(work, 'store-official'), '--progress', 'plain', '--output', `type=local,dest=${out}`, ctx], { cwd: work });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("docker/dockerfile:1 is Docker's Dockerfile frontend: building with bkt's built-in dockerfile.v0");
    expect(await readFile(join(out, 'message.txt'), 'utf8')).toBe('built in\n');
  });

  it('a frontend asking for host networking or insecure exec without the entitlement is refused, naming it', async () => {
    for (const [mode, entitlement] of [
      ['network-host', 'network.host'],
      ['insecure', 'security.insecure'],
    ] as const) {
      const r = await bkt(['build', '--root', join(work, 'store-ent'), '--progress', 'plain', '--frontend', 'gateway.v0', '--opt', `source=${frontend.reference}`, '--opt', `mode=${mode}`, context], {
        cwd: work,
        timeoutMs: 170_000,
      });
      expect(r.code).not.toBe(0);
      // The frontend saw PERMISSION_DENIED (7) naming the entitlement, and the build failed with it.
      expect(r.stderr).toContain('frontend refused (grpc code 7)');
      expect(r.stderr).toContain(entitlement);
    }
  });

  it('a frontend that returns an error or exits without returning fails the build, saying so', async () => {
    const failed = await bkt(['build', '--root', join(work, 'store-fail'), '--frontend', 'gateway.v0', '--opt', `source=${frontend.reference}`, '--opt', 'mode=fail', context], { cwd: work });
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain('the test frontend was asked to fail');
    const exited = await bkt(['build', '--root', join(work, 'store-fail'), '--frontend', 'gateway.v0', '--opt', `source=${frontend.reference}`, '--opt', 'mode=exit', context], { cwd: work });
    expect(exited.code).not.toBe(0);
    expect(exited.stderr).toContain('the frontend exited with code 3 without returning a result');
    // Nothing is left running or mounted.
    expect(await runcContainers(join(work, 'store-fail'))).toEqual([]);
    expect(mountsUnder(join(work, 'store-fail'))).toEqual([]);
  });

  it('a frontend image whose caps label lacks a requested capability is refused, naming it', async () => {
    const r = await bkt(['build', '--root', join(work, 'store-caps'), '--frontend', 'gateway.v0', '--opt', `source=${frontend.reference}`, '--opt', 'frontend.caps=moby.buildkit.frontend.subrequests', context], { cwd: work });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('does not support capability moby.buildkit.frontend.subrequests');
  });
});

describe('a frontend image through bktd', () => {
  let daemon: RunningDaemon;
  let socket: string;
  beforeAll(async () => {
    socket = join(work, 'bktd.sock');
    daemon = await startBktd(['--addr', `unix://${socket}`, '--root', join(work, 'daemon-root')], { cwd: work });
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  it('gateway.v0 and # syntax= build through the daemon as daemonless', async () => {
    const out = join(work, 'out-daemon-gw');
    const r = await bkt(['build', '--addr', `unix://${socket}`, '--progress', 'plain', '--frontend', 'gateway.v0', '--opt', `source=${frontend.reference}`, '--output', `type=local,dest=${out}`, context], {
      cwd: work,
      timeoutMs: 170_000,
    });
    expect(r.stderr).not.toContain('ERROR');
    expect(r.code, r.stderr).toBe(0);
    await expectFrontendOutput(out, { dockerfile: await readFile(join(context, 'Dockerfile'), 'utf8') });

    const ctx = join(work, 'ctx-daemon-syntax');
    await mkdir(ctx);
    await writeFile(join(ctx, 'message.txt'), 'hello from the context\n');
    await writeFile(join(ctx, 'other.txt'), 'x\n');
    await writeFile(join(ctx, 'Dockerfile'), syntaxDockerfile());
    const out2 = join(work, 'out-daemon-syntax');
    const r2 = await bkt(['build', '--addr', `unix://${socket}`, '--progress', 'plain', '--output', `type=local,dest=${out2}`, ctx], { cwd: work, timeoutMs: 170_000 });
    expect(r2.code, r2.stderr).toBe(0);
    await expectFrontendOutput(out2, { dockerfile: syntaxDockerfile() });
  });
});
