/**
 * The third way to the bridge: a frontend published as an npm package (a
 * plugin registering a frontend), named in a project's config and chosen
 * with `bkt build --frontend NAME --opt …`. It gets the same bridge an
 * LLBBridge frontend is served from: it solves the client's context, reads
 * a file of the result (readFile, statFile, readDir), solves a sub-graph and
 * returns it with an image config; its exec steps are held to the client's
 * entitlements like any other.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';

let work: string;
let project: string;

/** The package's code: plain ESM, the bridge and @bkt/llb only. */
const FRONTEND_PACKAGE = `
import { local, mkfile, scratch } from '@bkt/llb';
import * as pb from '@bkt/api/pb';

const bytes = (state) => pb.Definition.encode(state.marshal()).finish();

export default function upperFrontend() {
  return {
    name: 'bkt-frontend-upper',
    frontends: [
      {
        name: 'upper.v0',
        async solve(attrs, bridge, ctx) {
          if (attrs.mode === 'network-host') {
            await bridge.solve(bytes(scratch().run({ args: ['/bin/true'], network: 'host' }).root()));
          }
          const file = attrs.file ?? 'message.txt';
          const context = await bridge.solve(bytes(local('context')));
          const text = new TextDecoder().decode(await bridge.readFile(context.ref, file));
          const st = await bridge.statFile(context.ref, file);
          const names = (await bridge.readDir(context.ref, '/')).map((e) => e.path);
          ctx.progress.log(1, 'upper.v0 read ' + file + ' (' + st.size + ' bytes)\\n');
          const out = await bridge.solve(bytes(scratch().file(mkfile('/upper.txt', 0o644, text.toUpperCase())).file(mkfile('/names.txt', 0o644, names.join(',')))));
          const config = { architecture: 'amd64', os: 'linux', config: { Labels: { 'made-by': 'upper.v0' } }, rootfs: { type: 'layers', diff_ids: [] } };
          return { ref: out.ref, metadata: { 'containerimage.config': new TextEncoder().encode(JSON.stringify(config)) } };
        },
      },
    ],
  };
}
`;

beforeAll(async () => {
  work = await tempDir('gateway-plugin');
  project = join(work, 'project');
  const pkg = join(project, 'node_modules', 'bkt-frontend-upper');
  await mkdir(pkg, { recursive: true });
  await writeFile(join(pkg, 'package.json'), JSON.stringify({ name: 'bkt-frontend-upper', version: '1.0.0', type: 'module', exports: './index.js' }));
  await writeFile(join(pkg, 'index.js'), FRONTEND_PACKAGE);
  await writeFile(join(project, 'bkt.config.ts'), `import { defineConfig } from '@bkt/core';\nexport default defineConfig({ plugins: ['bkt-frontend-upper'], targets: {} });\n`);
  await writeFile(join(project, 'message.txt'), 'shout this\n');
  await writeFile(join(project, 'Dockerfile'), 'FROM scratch\n');
});

afterAll(async () => {
  if (work) await removeDir(work);
});

describe('a frontend from an npm package', () => {
  it('builds with --frontend upper.v0: reads a context file through the bridge and returns its result and image config', async () => {
    const out = join(work, 'out');
    const layout = join(work, 'layout');
    const r = await bkt(
      ['build', '--root', join(work, 'store'), '--progress', 'plain', '--frontend', 'upper.v0', '--opt', 'file=message.txt', '-o', out, '-o', `type=oci,dest=${layout},tar=false`, '.'],
      { cwd: project },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('upper.v0 read message.txt (11 bytes)');
    expect(await readFile(join(out, 'upper.txt'), 'utf8')).toBe('SHOUT THIS\n');
    expect((await readFile(join(out, 'names.txt'), 'utf8')).split(',')).toEqual(expect.arrayContaining(['Dockerfile', 'bkt.config.ts', 'message.txt']));
    // The image config the frontend returned is the exported image's.
    const blob = async (digest: string) => JSON.parse(await readFile(join(layout, 'blobs', ...digest.split(':')), 'utf8')) as Record<string, unknown>;
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    let manifest = await blob(index.manifests[0].digest);
    if (Array.isArray(manifest.manifests)) manifest = await blob((manifest.manifests as { digest: string }[])[0].digest);
    const config = await blob((manifest.config as { digest: string }).digest);
    expect((config.config as { Labels: Record<string, string> }).Labels['made-by']).toBe('upper.v0');
  });

  it('is held to the client entitlements: host networking without --allow network.host is refused, naming it', async () => {
    const r = await bkt(['build', '--root', join(work, 'store'), '--frontend', 'upper.v0', '--opt', 'mode=network-host', '.'], { cwd: project });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('network.host');
  });

  it('an unknown --frontend is an error naming it and the registered ones', async () => {
    const r = await bkt(['build', '--root', join(work, 'store'), '--frontend', 'nope.v0', '.'], { cwd: project });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('nope.v0');
  });
});
