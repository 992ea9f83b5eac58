/**
 * The `dockerfile.v0` frontend in the real solver: Dockerfiles over a busybox
 * image pushed to a local `docker-registry`, run in runc, exported with the
 * local exporter.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBkt, isBktError, type BuildClient, type ClientLocalDir, type ProgressEvent } from '@bkt/core';
import { createHostClient } from '@bkt/fsutil';
import localExporters from '@bkt/exporter-local';
import imageSource from '@bkt/source-image';
import localSource from '@bkt/source-local';
import { image, marshalBytes, mkfile, scratch } from '@bkt/llb';
import { hostPlatform } from '@bkt/oci';
import { builtinOpsPlugin, openSolver, type Solver } from '@bkt/solver';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import runcWorker from '@bkt/worker-runc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dockerfile from './index.js';
import type { DockerImage } from './convert/image.js';

let dir: string;
let registry: RegistryServer;
let pushed: PushedImage;
let solver: Solver;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bkt-dockerfile-'));
  registry = await startRegistry();
  pushed = await pushBusyboxImage(registry, 'test/busybox');
  const bkt = await createBkt([localSource(), imageSource(), builtinOpsPlugin(), runcWorker(), localExporters(), dockerfile()]);
  solver = await openSolver({ root: join(dir, 'store'), bkt });
}, 120_000);

afterAll(async () => {
  await solver?.close();
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A build of `files` (the Dockerfile among them) as the context; returns the exported tree's dir. */
async function build(name: string, files: Record<string, string>, attrs: Record<string, string> = {}) {
  const ctxDir = join(dir, name, 'context');
  const out = join(dir, name, 'out');
  for (const [p, content] of Object.entries(files)) {
    await mkdir(join(ctxDir, p, '..'), { recursive: true });
    await writeFile(join(ctxDir, p), content.replaceAll('{{BASE}}', pushed.reference));
  }
  const events: ProgressEvent[] = [];
  const res = await solver.solve({
    frontend: 'dockerfile.v0',
    frontendAttrs: attrs,
    localDirs: { context: ctxDir, dockerfile: ctxDir },
    exporters: [{ type: 'local', attrs: { dest: out } }],
    onProgress: (e: ProgressEvent) => events.push(e),
  });
  const config = JSON.parse(Buffer.from(res.result.metadata['containerimage.config']).toString()) as DockerImage;
  return { out, config, events, res };
}

describe('dockerfile.v0 in the solver', () => {
  it('builds a Dockerfile: base image config, ARG, WORKDIR, COPY, RUN, and the image config', async () => {
    const { out, config, events } = await build(
      'basic',
      {
        Dockerfile: 'FROM {{BASE}}\nARG MSG=hello\nWORKDIR /app\nCOPY greeting.txt ./\nRUN echo "$MSG from $(pwd)" > out.txt && cat greeting.txt >> out.txt\nCMD ["cat", "/app/out.txt"]\n',
        'greeting.txt': 'greetings\n',
        '.dockerignore': 'ignored/\n',
        'ignored/big': 'x',
      },
      { 'build-arg:MSG': 'hi' },
    );
    expect(await readFile(join(out, 'app/out.txt'), 'utf8')).toBe('hi from /app\ngreetings\n');
    expect(config.config).toMatchObject({ WorkingDir: '/app', Cmd: ['cat', '/app/out.txt'] });
    expect(config.history!.map((h) => h.created_by).slice(-5, -1)).toEqual([
      'ARG MSG=hi',
      'WORKDIR /app',
      'COPY greeting.txt ./ # buildkit',
      'RUN |1 MSG=hi /bin/sh -c echo "$MSG from $(pwd)" > out.txt && cat greeting.txt >> out.txt # buildkit',
    ]);
    const names = events.filter((e) => e.type === 'vertex').map((e) => (e as Extract<ProgressEvent, { type: 'vertex' }>).vertex.name);
    expect(names).toContain('[4/4] RUN echo "hi from $(pwd)" > out.txt && cat greeting.txt >> out.txt');
  }, 120_000);

  it('builds independent stages as separate branches', async () => {
    const stages = [0, 1, 2, 3].map((i) => `FROM {{BASE}} AS s${i}\nRUN sleep 1 && echo ${i} > /r${i}\n`).join('');
    const final = 'FROM scratch\n' + [0, 1, 2, 3].map((i) => `COPY --from=s${i} /r${i} /\n`).join('');
    const { out, res } = await build('parallel', { Dockerfile: stages + final });
    for (const i of [0, 1, 2, 3]) expect(await readFile(join(out, `r${i}`), 'utf8')).toBe(`${i}\n`);
    // The image, four RUNs and four COPYs: each stage is its own branch.
    expect(res.stats.vertices).toBe(9);
  }, 120_000);

  it('a COPY of a missing file fails with its Dockerfile line', async () => {
    const err = await build('missing', { Dockerfile: 'FROM {{BASE}}\nRUN true\nCOPY nothere.txt /x\n' }).catch((e: unknown) => e);
    expect(isBktError(err)).toBe(true);
    expect((err as Error).message).toMatch(/^Dockerfile:3: /);
    expect((err as Error).message).toContain('   3 | COPY nothere.txt /x');
  }, 120_000);

  it('reports build-check warnings with their rule and line', async () => {
    const { events } = await build('warn', { Dockerfile: 'FROM {{BASE}} as Base\nRUN true\n' });
    const warnings = events.filter((e): e is Extract<ProgressEvent, { type: 'warning' }> => e.type === 'warning').map((e) => e.warning.short);
    expect(warnings).toEqual(expect.arrayContaining(['StageNameCasing: Stage name \'Base\' should be lowercase (line 1)', "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)"]));
  }, 120_000);
});

describe('reading the Dockerfile and the ignore files', () => {
  it('asks the client for the Dockerfile and both ignore files at once (each a round trip through a daemon), the one beside the Dockerfile winning', async () => {
    const ctxDir = join(dir, 'at-once', 'context');
    await mkdir(join(ctxDir, 'ignored'), { recursive: true });
    await writeFile(join(ctxDir, 'Dockerfile'), 'FROM scratch\nCOPY . /\n');
    await writeFile(join(ctxDir, 'Dockerfile.dockerignore'), 'ignored\n');
    await writeFile(join(ctxDir, '.dockerignore'), 'kept.txt\n');
    await writeFile(join(ctxDir, 'kept.txt'), 'kept');
    await writeFile(join(ctxDir, 'ignored/x'), 'x');
    const host = createHostClient({ localDirs: { context: ctxDir, dockerfile: ctxDir } });
    const log: string[] = [];
    // Each selection's stat takes 150 ms, as a slow round trip would.
    const slow = (d: ClientLocalDir): ClientLocalDir => ({
      ...d,
      name: d.name,
      syncKey: d.syncKey,
      async *stat(selection, signal) {
        const what = `${d.name}:${selection?.include?.join(',') ?? '*'}`;
        log.push(`start ${what}`);
        await new Promise((r) => setTimeout(r, 150));
        yield* d.stat(selection, signal);
        log.push(`end ${what}`);
      },
      read: (p, signal) => d.read(p, signal),
    });
    const client: BuildClient = { ...host, localDirNames: () => host.localDirNames(), localDir: (n) => { const d = host.localDir(n); return d && slow(d); } };
    const out = join(dir, 'at-once', 'out');
    await solver.solve({ frontend: 'dockerfile.v0', frontendAttrs: {}, client, exporters: [{ type: 'local', attrs: { dest: out } }] });
    expect(await readFile(join(out, 'kept.txt'), 'utf8')).toBe('kept');
    await expect(readFile(join(out, 'ignored/x'))).rejects.toThrow();
    const firstEnd = log.findIndex((l) => l.startsWith('end '));
    expect(log.slice(0, firstEnd).filter((l) => l.startsWith('start ') && /Dockerfile|dockerignore/.test(l))).toHaveLength(3);
  }, 120_000);
});

describe('frontend inputs (a Solve\'s FrontendInputs)', () => {
  const file = (path: string, content: string) => marshalBytes(scratch().file(mkfile(path, 0o644, content.replaceAll('{{BASE}}', pushed.reference))));

  async function buildInputs(name: string, frontendInputs: Record<string, Uint8Array>, attrs: Record<string, string> = {}, localDirs: Record<string, string> = {}) {
    const out = join(dir, name, 'out');
    const res = await solver.solve({ frontend: 'dockerfile.v0', frontendAttrs: attrs, frontendInputs, localDirs, exporters: [{ type: 'local', attrs: { dest: out } }] });
    return { out, res };
  }

  it('builds the Dockerfile of the dockerfile input over the context input, no client directory at all', async () => {
    const { out } = await buildInputs('inputs-basic', {
      dockerfile: file('/Dockerfile', 'FROM {{BASE}}\nCOPY greeting.txt /\nRUN cat /greeting.txt > /out.txt\n'),
      context: file('/greeting.txt', 'from the context input\n'),
    });
    expect(await readFile(join(out, 'out.txt'), 'utf8')).toBe('from the context input\n');
  }, 120_000);

  it('a named context input:NAME is a stage base, with the image config of input-metadata:NAME', async () => {
    const config = { os: 'linux', architecture: hostPlatform().architecture, config: { Env: ['PATH=/bin', 'FROM_METADATA=yes'] }, rootfs: { type: 'layers', diff_ids: [] } };
    const { out } = await buildInputs(
      'inputs-named',
      {
        dockerfile: file('/Dockerfile', 'FROM base\nRUN echo "$FROM_METADATA" > /env.txt && cat /marker > /seen.txt\n'),
        'base-input': marshalBytes(image(pushed.reference).file(mkfile('/marker', 0o644, 'the input image\n'))),
      },
      { 'context:base': 'input:base-input', 'input-metadata:base-input': JSON.stringify({ 'containerimage.config': Buffer.from(JSON.stringify(config)).toString('base64') }) },
    );
    expect(await readFile(join(out, 'env.txt'), 'utf8')).toBe('yes\n');
    expect(await readFile(join(out, 'seen.txt'), 'utf8')).toBe('the input image\n');
  }, 120_000);

  it('dockerfilekey reads the Dockerfile from that directory even when a dockerfile input is given', async () => {
    const local = join(dir, 'inputs-forced', 'df');
    await mkdir(local, { recursive: true });
    await writeFile(join(local, 'Dockerfile'), 'FROM scratch\nCOPY greeting.txt /local.txt\n');
    const { out } = await buildInputs(
      'inputs-forced',
      { dockerfile: file('/Dockerfile', 'FROM scratch\nCOPY greeting.txt /input.txt\n'), context: file('/greeting.txt', 'hi\n') },
      { dockerfilekey: 'mydf' },
      { mydf: local },
    );
    expect(await readFile(join(out, 'local.txt'), 'utf8')).toBe('hi\n');
  }, 120_000);

  it('an unknown input for a named context, and a dockerfile input without the Dockerfile, are errors naming them', async () => {
    const unknown = await buildInputs('inputs-unknown', { dockerfile: file('/Dockerfile', 'FROM base\n') }, { 'context:base': 'input:nope' }).catch((e: unknown) => e);
    expect(isBktError(unknown)).toBe(true);
    expect((unknown as Error).message).toContain('context:base: invalid input nope (frontend inputs: dockerfile)');
    const missing = await buildInputs('inputs-missing', { dockerfile: file('/other', 'x') }).catch((e: unknown) => e);
    expect(isBktError(missing, 'NOT_FOUND')).toBe(true);
    expect((missing as Error).message).toBe('failed to read dockerfile: open Dockerfile: no such file or directory (in frontend input dockerfile)');
  }, 120_000);
});
