/**
 * The gateway.v0 frontend's checks before anything runs, against a
 * recording stand-in bridge (the real run — an image in runc with LLBBridge
 * over its stdio — is tested end to end in tests/e2e/gateway).
 */
import { describe, expect, it } from 'vitest';
import { BktError, isBktError, type Attrs, type BuildContext, type BuildResult, type ContentStore, type FrontendBridge, type ProgressWriter, type Snapshotter } from '@bkt/core';
import { testBuildContext as makeContext } from '@bkt/core/testing';

/** A context for checks that never reach the store (its snapshotter and content store are never called). */
function testBuildContext(opts: { progress?: ProgressWriter } = {}): BuildContext {
  return makeContext({ root: '/nonexistent', snapshotter: {} as Snapshotter, content: {} as ContentStore, ...opts }).ctx;
}
import { gatewayFrontend, isDockerfileFrontend } from './frontend.js';

/** A bridge that records forwarding and answers image configs with `labels`; anything else fails the test. */
function standIn(labels: Record<string, string> = {}, inputs?: Record<string, Uint8Array>) {
  const forwarded: { name: string; attrs: Attrs }[] = [];
  const unexpected = async (): Promise<never> => {
    throw new Error('unexpected bridge call');
  };
  const bridge: FrontendBridge = {
    solve: unexpected,
    solveFrontend: async (name, attrs): Promise<BuildResult> => {
      forwarded.push({ name, attrs });
      return { ref: null, metadata: { from: new TextEncoder().encode(name) } };
    },
    readFile: unexpected,
    readDir: unexpected,
    statFile: unexpected,
    warn: () => undefined,
    resolveImageConfig: async () => ({ digest: `sha256:${'1'.repeat(64)}`, config: new TextEncoder().encode(JSON.stringify({ config: { Labels: labels } })) }),
    ...(inputs ? { inputs } : {}),
  };
  return { bridge, forwarded };
}

describe('gateway.v0', () => {
  it('needs a source, naming the attribute', async () => {
    const err = await gatewayFrontend().solve({}, standIn().bridge, testBuildContext()).catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as BktError).details.attribute).toBe('source');
  });

  it("serves Docker's Dockerfile frontend with the built-in dockerfile.v0 and says so", async () => {
    const { bridge, forwarded } = standIn();
    const logs: string[] = [];
    const ctx = testBuildContext({ progress: { log: (_s, m) => void logs.push(String(m)), status() {}, warn() {} } });
    const r = await gatewayFrontend().solve({ source: 'docker/dockerfile:1.7', cmdline: 'x', 'build-arg:A': '1' }, bridge, ctx);
    expect(forwarded).toEqual([{ name: 'dockerfile.v0', attrs: { 'build-arg:A': '1' } }]);
    expect(new TextDecoder().decode(r.metadata.from)).toBe('dockerfile.v0');
    expect(logs.join('')).toContain("docker/dockerfile:1.7 is Docker's Dockerfile frontend: using bkt's built-in dockerfile.v0");
  });

  it('refuses a source outside allowedRepositories, naming it', async () => {
    const fe = gatewayFrontend({ allowedRepositories: ['registry.example/acme/frontend'] });
    const err = await fe.solve({ source: 'registry.example/other/frontend:1' }, standIn().bridge, testBuildContext()).catch((e: unknown) => e);
    expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
    expect((err as Error).message).toContain("'registry.example/other/frontend:1' is not an allowed gateway source");
  });

  it('refuses a frontend image whose caps label lacks a requested capability (inputs imply frontend.inputs), naming it', async () => {
    const withInputs = standIn({ 'moby.buildkit.frontend.caps': 'moby.buildkit.frontend.subrequests' }, { context: new Uint8Array() });
    const err = await gatewayFrontend().solve({ source: 'registry.example/acme/frontend:1' }, withInputs.bridge, testBuildContext()).catch((e: unknown) => e);
    expect(isBktError(err, 'UNIMPLEMENTED')).toBe(true);
    expect((err as Error).message).toContain('does not support capability moby.buildkit.frontend.inputs');
  });

  it('recognises Docker Hub references to docker/dockerfile only', () => {
    expect(isDockerfileFrontend('docker/dockerfile')).toBe(true);
    expect(isDockerfileFrontend('docker.io/docker/dockerfile:1@sha256:' + 'a'.repeat(64))).toBe(true);
    expect(isDockerfileFrontend('docker/dockerfile-upstream:master')).toBe(false);
    expect(isDockerfileFrontend('ghcr.io/docker/dockerfile:1')).toBe(false);
    expect(isDockerfileFrontend('not a reference')).toBe(false);
  });
});
