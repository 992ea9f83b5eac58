/**
 * `# syntax=IMAGE` and the BUILDKIT_SYNTAX build arg forward the build to the
 * `gateway.v0` frontend (here a recording stand-in: the real one runs images
 * in containers, tested end to end in tests/e2e/gateway), with the attrs,
 * `source`, `cmdline` and the frontend inputs; Docker's own
 * `docker/dockerfile` is built by this frontend, and the progress says so.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBkt, isBktError, type Attrs, type BktPlugin, type ProgressEvent } from '@bkt/core';
import localSource from '@bkt/source-local';
import { builtinOpsPlugin, openSolver, type Solver } from '@bkt/solver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dockerfile from './index.js';
import { isOfficialDockerfileFrontend, syntaxOf } from './frontend.js';

let dir: string;
let solver: Solver;
const forwarded: { attrs: Attrs; inputs: string[] }[] = [];
let gatewayFails = false;

const gatewayStandIn: BktPlugin = {
  name: 'gateway-stand-in',
  frontends: [
    {
      name: 'gateway.v0',
      async solve(attrs, bridge) {
        forwarded.push({ attrs, inputs: Object.keys(bridge.inputs ?? {}) });
        if (gatewayFails) throw new Error('frontend image failed');
        return { ref: null, metadata: { 'containerimage.config': new TextEncoder().encode('{"from":"gateway"}') } };
      },
    },
  ],
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bkt-dockerfile-syntax-'));
  solver = await openSolver({ root: join(dir, 'store'), bkt: await createBkt([localSource(), builtinOpsPlugin(), dockerfile(), gatewayStandIn]) });
});
afterAll(async () => {
  await solver?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function build(name: string, text: string, attrs: Attrs = {}) {
  const ctx = join(dir, name);
  await mkdir(ctx, { recursive: true });
  await writeFile(join(ctx, 'Dockerfile'), text);
  await writeFile(join(ctx, 'file.txt'), 'context file\n');
  const logs: string[] = [];
  forwarded.length = 0;
  const res = await solver.solve({
    frontend: 'dockerfile.v0',
    frontendAttrs: attrs,
    localDirs: { context: ctx, dockerfile: ctx },
    onProgress: (e: ProgressEvent) => void (e.type === 'log' && logs.push(Buffer.from(e.log.msg).toString())),
  });
  return { res, logs: logs.join('') };
}

describe('# syntax= forwarding', () => {
  it('forwards to gateway.v0 with source, cmdline and the build attrs; the result is the frontend image\'s', async () => {
    const { res, logs } = await build('fwd', '# syntax=registry.example/acme/frontend:2 --flag=x\nFROM scratch\nCOPY file.txt /\n', { 'build-arg:A': '1' });
    expect(forwarded).toHaveLength(1);
    expect(forwarded[0].attrs).toEqual({ 'build-arg:A': '1', source: 'registry.example/acme/frontend:2', cmdline: 'registry.example/acme/frontend:2 --flag=x' });
    expect(Buffer.from(res.result.metadata['containerimage.config']).toString()).toBe('{"from":"gateway"}');
    expect(logs).toContain('# syntax= registry.example/acme/frontend:2: forwarding the build to gateway.v0');
  });

  it('BUILDKIT_SYNTAX wins over the directive', async () => {
    await build('arg', '# syntax=registry.example/acme/frontend:2\nFROM scratch\n', { 'build-arg:BUILDKIT_SYNTAX': 'other.example/f:1' });
    expect(forwarded[0].attrs.source).toBe('other.example/f:1');
  });

  it('docker/dockerfile:* is built here, and the progress says so', async () => {
    const { res, logs } = await build('official', '# syntax=docker/dockerfile:1.7\nFROM scratch\nCOPY file.txt /\n');
    expect(forwarded).toHaveLength(0);
    expect(logs).toContain("docker/dockerfile:1.7 is Docker's Dockerfile frontend: building with bkt's built-in dockerfile.v0");
    expect(res.result.ref).not.toBeNull();
  });

  it("a forwarded frontend's failure names the directive's line", async () => {
    gatewayFails = true;
    try {
      const err = await build('fails', '# syntax=registry.example/acme/frontend:2\nFROM scratch\n').catch((e: unknown) => e);
      expect(isBktError(err)).toBe(true);
      expect((err as Error).message).toContain('Dockerfile:1: # syntax= registry.example/acme/frontend:2: ');
      expect((err as Error).message).toContain('frontend image failed');
    } finally {
      gatewayFails = false;
    }
  });

  it('a forwarded build (its attrs carry cmdline) does not forward again; references are recognised', () => {
    expect(syntaxOf({ cmdline: 'x' }, '# syntax=a/b\nFROM scratch\n')).toBeUndefined();
    expect(syntaxOf({}, 'FROM scratch\n# syntax=a/b\n')).toBeUndefined();
    expect(syntaxOf({}, '# syntax = a/b:1 x y\n')).toEqual({ ref: 'a/b:1', cmdline: 'a/b:1 x y', line: 1, where: '# syntax=' });
    expect(isOfficialDockerfileFrontend('docker/dockerfile')).toBe(true);
    expect(isOfficialDockerfileFrontend('docker.io/docker/dockerfile:1@sha256:' + 'a'.repeat(64))).toBe(true);
    expect(isOfficialDockerfileFrontend('docker/dockerfile-upstream:master')).toBe(false);
    expect(isOfficialDockerfileFrontend('ghcr.io/docker/dockerfile:1')).toBe(false);
  });
});
