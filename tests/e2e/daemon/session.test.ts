/**
 * Builds through bktd whose client is a session (issue 11): the client
 * serves its directories, outputs and secrets over `Control.Session`
 * (`openSession` of @bkt/session over this process's host client), the
 * Solve names the session, and the build reads the context and writes the
 * outputs through it — a directory output and a tar file output, byte for
 * byte what the daemonless CLI writes.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHostClient } from '@bkt/fsutil';
import { local } from '@bkt/llb';
import { openSession, type OpenSession } from '@bkt/session';
import { pushBusyboxImage, skopeoInspect, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { bkt, describeTree, removeDir, tempDir } from '../helpers.js';
import { bktEnv, readMetadata } from '../images/lib.js';
import { Control, startBktd, type RunningDaemon } from './lib.js';

let work: string;
let context: string;
let daemon: RunningDaemon;
let client: Control;
let registry: RegistryServer;
let busybox: PushedImage;

beforeAll(async () => {
  work = await tempDir('daemon-session');
  context = join(work, 'context');
  await mkdir(join(context, 'sub'), { recursive: true });
  await writeFile(join(context, 'hello.txt'), 'hello through the session\n');
  await writeFile(join(context, 'sub/data.bin'), Buffer.alloc(300_000, 7));
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  daemon = await startBktd(['--addr', `unix://${join(work, 'bktd.sock')}`, '--root', join(work, 'root')], { cwd: work });
  client = new Control(`unix://${join(work, 'bktd.sock')}`);
});

afterAll(async () => {
  client?.close();
  if (daemon) expect(await daemon.stop()).toBe(0);
  await registry?.stop();
  if (work) await removeDir(work);
});

const definition = () => local('context').marshal();

describe('a Solve whose client is a session', () => {
  let session: OpenSession | undefined;

  afterAll(() => session?.close());

  it('reads the local context and writes a directory output and a tar through the session', async () => {
    const out = join(work, 'out-dir');
    const tarFile = join(work, 'out.tar');
    session = openSession(client.raw, createHostClient({ localDirs: { context } }), {
      outputs: { 0: { type: 'dir', dest: out }, 1: { type: 'file', dest: tarFile } },
    });
    const r = await client.solve({
      Session: session.id,
      Definition: definition(),
      Exporters: [
        { Type: 'local', Attrs: { dest: out } },
        { Type: 'tar', Attrs: { dest: tarFile } },
      ],
    });
    expect(r.ExporterResponse).toBeDefined();
    expect(await describeTree(out)).toEqual(await describeTree(context));

    // The daemonless CLI writes the same tar.
    const cli = await bkt(['build', '--llb', '-', '--local', `context=${context}`, '--root', join(work, 'cli-root'), '-o', `type=tar,dest=${join(work, 'cli.tar')}`], {
      cwd: work,
      input: Buffer.from((await import('@bkt/api')).pb.Definition.encode(definition()).finish()),
    });
    expect(cli.code, cli.stderr).toBe(0);
    expect((await readFile(tarFile)).equals(await readFile(join(work, 'cli.tar')))).toBe(true);
  });

  it('a Dockerfile build (dockerfile.v0 frontend, context and Dockerfile over the session) pushes the image the CLI pushes', async () => {
    const epoch = '1700000000';
    await writeFile(join(context, 'Dockerfile'), `FROM ${busybox.reference}\nRUN echo built > /built\nCOPY hello.txt /\n`);
    const s = openSession(client.raw, createHostClient({ localDirs: { context, dockerfile: context } }));
    try {
      const attrs = { push: 'true', 'rewrite-timestamp': 'true' };
      const r = await client.solve({
        Session: s.id,
        Frontend: 'dockerfile.v0',
        FrontendAttrs: { filename: 'Dockerfile', 'build-arg:SOURCE_DATE_EPOCH': epoch },
        Exporters: [{ Type: 'image', Attrs: { name: `${registry.host}/e2e/df:daemon`, ...attrs } }],
      });
      const cli = await bktEnv(
        ['build', '--root', join(work, 'cli-root'), '--progress', 'plain', '--metadata-file', join(work, 'df.json'), '-o', `type=image,name=${registry.host}/e2e/df:cli,push=true,rewrite-timestamp=true`, context],
        { cwd: work, env: { SOURCE_DATE_EPOCH: epoch } },
      );
      expect(cli.code, cli.stderr).toBe(0);
      const digest = r.ExporterResponse['containerimage.digest'];
      expect(digest).toBe((await readMetadata(join(work, 'df.json')))['containerimage.digest']);
      expect(((await skopeoInspect(`${registry.host}/e2e/df:daemon`)) as { Digest: string }).Digest).toBe(digest);
    } finally {
      s.close();
    }
  });

  it('a Solve naming a session that never connects fails NOT_FOUND naming it', async () => {
    await expect(client.solve({ Session: 'no-such-session', Definition: definition(), Exporters: [{ Type: 'local', Attrs: { dest: join(work, 'never') } }] })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: expect.stringContaining('no-such-session'),
    });
  }, 30_000);

  it('a Session call without a session id is refused', { timeout: 15_000 }, async () => {
    const call = client.raw.session();
    const err = await new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/X-Docker-Expose-Session-Uuid/i);
  });
});
