/**
 * `bkt` as a client of `bktd` (issue 11): builds of every kind through a
 * real daemon on a unix socket — a Dockerfile with its context, a secret and
 * a build arg to `type=local`, `type=tar,dest=-` and `-t … --push` (the
 * digest the daemonless build pushes), an `--llb` definition, a config
 * target — with the progress, errors and exit codes of a build in the CLI's
 * own process; `du`, `prune` and `history` against the daemon; Ctrl-C
 * cancelling the remote build; and a client in its own mount namespace,
 * whose context and output directory the daemon cannot see.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, skopeoInspect, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { BKT, copyOp, definition, describeTree, removeDir, sourceOp, tempDir } from '../helpers.js';
import { readMetadata } from '../images/lib.js';
import { Control, runcContainers, startBktd, type RunningDaemon } from '../daemon/lib.js';
import { bktEnv, startBkt, stepNames } from './lib.js';

const SECRET = 'the client secret value\n';
const EPOCH = '1700000000';

let work: string;
let context: string;
let socket: string;
let addr: string;
let daemonRoot: string;
let daemon: RunningDaemon;
let control: Control;
let registry: RegistryServer;
let busybox: PushedImage;

/** `bkt ARGS` in the work dir (SOURCE_DATE_EPOCH set, as for every build here). */
const bkt = (args: string[], env: Record<string, string> = {}) => bktEnv(args, { cwd: work, env: { SOURCE_DATE_EPOCH: EPOCH, ...env } });
/** The Dockerfile flags of the main build: its secret and build arg. */
const dockerfileFlags = () => ['--secret', `id=token,src=${join(work, 'token.txt')}`, '--build-arg', 'GREETING=hello from the client'];

beforeAll(async () => {
  work = await tempDir('client-build');
  context = join(work, 'context');
  await mkdir(join(context, 'sub'), { recursive: true });
  await writeFile(join(context, 'hello.txt'), 'hello through the session\n');
  await writeFile(join(context, 'sub/data.bin'), Buffer.alloc(200_000, 9));
  await writeFile(join(work, 'token.txt'), SECRET);
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  await writeFile(
    join(context, 'Dockerfile'),
    [
      `FROM ${busybox.reference}`,
      'ARG GREETING',
      'COPY . /src/',
      'RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -c1-64 > /token.sha && echo "$GREETING" > /greeting',
      '',
    ].join('\n'),
  );
  socket = join(work, 'bktd.sock');
  addr = `unix://${socket}`;
  daemonRoot = join(work, 'daemon-root');
  daemon = await startBktd(['--addr', addr, '--root', daemonRoot], { cwd: work });
  control = new Control(addr);
});

afterAll(async () => {
  control?.close();
  if (daemon) expect(await daemon.stop()).toBe(0);
  await registry?.stop();
  if (work) await removeDir(work);
});

describe('a Dockerfile build through bktd', () => {
  it('reads the context, the secret and the build arg, writes type=local, and shows its steps in plain progress', async () => {
    const out = join(work, 'out-daemon');
    const r = await bkt(['build', '--addr', addr, '--progress', 'plain', ...dockerfileFlags(), '-o', `type=local,dest=${out}`, context]);
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(join(out, 'greeting'), 'utf8')).toBe('hello from the client\n');
    expect(await readFile(join(out, 'token.sha'), 'utf8')).toBe(`${createHash('sha256').update(SECRET).digest('hex')}\n`);
    expect(await readFile(join(out, 'src/hello.txt'), 'utf8')).toBe('hello through the session\n');
    expect(r.stderr).toMatch(/^#\d+ \[internal\] load build context$/m);
    expect(r.stderr).toMatch(/^#\d+ \[.*3\/3\] RUN --mount=type=secret,id=token sha256sum/m);
    expect(r.stderr).toMatch(/^#\d+ exporting to local$/m);
    expect(r.stderr).toMatch(/^#\d+ DONE \d+\.\d+s$/m);
    expect(r.stderr).toMatch(/^solver time: \d+\.\d{3}s \(\d+ steps, \d+ cached\)$/m);
    expect(r.stderr).not.toContain(SECRET.trim());

    // The daemonless build of the same flags shows the same steps and writes the same tree.
    const cliOut = join(work, 'out-cli');
    const cli = await bkt(['build', '--root', join(work, 'cli-root'), '--progress', 'plain', ...dockerfileFlags(), '-o', `type=local,dest=${cliOut}`, context]);
    expect(cli.code, cli.stderr).toBe(0);
    expect(stepNames(r.stderr)).toEqual(stepNames(cli.stderr));
    expect(/^solver time: .*$/m.exec(r.stderr)![0].replace(/\d+\.\d+s/, 'T')).toBe(/^solver time: .*$/m.exec(cli.stderr)![0].replace(/\d+\.\d+s/, 'T'));
    expect(await describeTree(out)).toEqual(await describeTree(cliOut));
  });

  it('writes type=tar,dest=- to stdout through the session', async () => {
    const r = await bkt(['build', '--addr', addr, '--progress', 'quiet', ...dockerfileFlags(), '-o', 'type=tar,dest=-', context]);
    expect(r.code, r.stderr).toBe(0);
    const extracted = join(work, 'tar-extracted');
    await mkdir(extracted);
    await execa('tar', ['-x', '-C', extracted], { input: r.stdoutBytes });
    expect(await describeTree(extracted)).toEqual(await describeTree(join(work, 'out-daemon')));
  });

  it('-t NAME --push pushes the image digest the daemonless build pushes (SOURCE_DATE_EPOCH set); --metadata-file, --iidfile, -q', async () => {
    const attrs = ['-o', 'type=image,rewrite-timestamp=true', '--push'];
    const daemonName = `${registry.host}/e2e/client:daemon`;
    const r = await bkt([
      'build', '--addr', addr, '-q', ...dockerfileFlags(), ...attrs, '-t', daemonName,
      '--metadata-file', join(work, 'daemon.json'), '--iidfile', join(work, 'daemon.iid'), context,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const cli = await bkt(['build', '--root', join(work, 'cli-root'), '-q', ...dockerfileFlags(), ...attrs, '-t', `${registry.host}/e2e/client:cli`, '--metadata-file', join(work, 'cli.json'), context]);
    expect(cli.code, cli.stderr).toBe(0);

    const meta = await readMetadata(join(work, 'daemon.json'));
    const cliMeta = await readMetadata(join(work, 'cli.json'));
    expect(meta['containerimage.digest']).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(meta['containerimage.digest']).toBe(cliMeta['containerimage.digest']);
    expect(meta['image.name']).toBe(daemonName);
    expect(meta['bkt.build.ref']).toMatch(/^[0-9a-z]{25}$/);
    expect(((await skopeoInspect(daemonName)) as { Digest: string }).Digest).toBe(meta['containerimage.digest']);
    expect(await readFile(join(work, 'daemon.iid'), 'utf8')).toBe(meta['containerimage.config.digest']);
    // -q: the image id on stdout, and nothing on stderr.
    expect(r.stdout).toBe(`${meta['containerimage.config.digest']}\n`);
    expect(r.stderr).toBe('');
  });

  it('a failing RUN exits 1 with the step and its last lines, and the error line of the daemonless build', async () => {
    const dir = join(work, 'failing');
    await mkdir(dir);
    await writeFile(join(dir, 'Dockerfile'), `FROM ${busybox.reference}\nRUN for i in $(seq 1 30); do echo line $i; done; exit 3\n`);
    const r = await bkt(['build', '--addr', addr, '--progress', 'plain', dir]);
    expect(r.code, r.stderr).toBe(1);
    const report = /------\n > (.*):\n([\s\S]*?)------\n/.exec(r.stderr);
    expect(report, r.stderr).not.toBeNull();
    expect(report![1]).toBe('[2/2] RUN for i in $(seq 1 30); do echo line $i; done; exit 3');
    expect(report![2]!.trim().split('\n')).toEqual(Array.from({ length: 10 }, (_, i) => `line ${21 + i}`));
    expect(r.stderr).toMatch(/^#\d+ ERROR: .*exit code: 3$/m);

    const cli = await bkt(['build', '--root', join(work, 'cli-root'), '--progress', 'plain', dir]);
    expect(cli.code).toBe(1);
    const errorLine = (s: string) => s.split('\n').filter((l) => l.startsWith('error: '));
    expect(errorLine(r.stderr)).toEqual(errorLine(cli.stderr));
    expect(errorLine(r.stderr)).toEqual([expect.stringMatching(/^error: Dockerfile:2: .*did not complete successfully: exit code: 3$/)]);
  });
});

describe('other builds through bktd', () => {
  it('--llb solves a definition with its --local directory; --no-cache runs its steps again', async () => {
    const ctx = sourceOp('local://context');
    const copy = copyOp(ctx, '/hello.txt', '/copied.txt');
    await writeFile(join(work, 'def.pb'), definition([ctx, copy], copy));
    const args = ['build', '--addr', addr, '--progress', 'plain', '--llb', 'def.pb', '--local', `context=${context}`, '-o', `type=local,dest=${join(work, 'out-llb')}`];
    const first = await bkt(args);
    expect(first.code, first.stderr).toBe(0);
    expect(await readFile(join(work, 'out-llb/copied.txt'), 'utf8')).toBe('hello through the session\n');
    const cached = await bkt(args);
    expect(cached.stderr).toMatch(/^#\d+ CACHED$/m);
    const again = await bkt([...args, '--no-cache']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/^#\d+ CACHED$/m);
    expect(again.stderr).toMatch(/\(2 steps, 0 cached\)/);
  });

  it('a config target is solved as its definition; one resolving image configs is refused, naming the gateway', async () => {
    const project = join(work, 'project');
    await mkdir(project);
    const ref = JSON.stringify(busybox.reference);
    await writeFile(
      join(project, 'bkt.config.ts'),
      [
        `import { defineConfig } from '@bkt/core';`,
        `import { image } from '@bkt/llb';`,
        `export default defineConfig({ targets: {`,
        `  default: { build: image(${ref}).run({ shell: 'echo made by a target > /made' }).root(), outputs: [{ type: 'local', dest: 'out' }] },`,
        `  resolved: { build: async ({ metaResolver }) => (await image(${ref}, { metaResolver })).run({ shell: 'true' }).root() },`,
        `} });`,
        '',
      ].join('\n'),
    );
    const r = await bktEnv(['build', '--addr', addr, '--progress', 'plain'], { cwd: project });
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(join(project, 'out/made'), 'utf8')).toBe('made by a target\n');

    const refused = await bktEnv(['build', 'resolved', '--addr', addr], { cwd: project });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error: target "resolved": image\(.*\{ metaResolver \}\) resolves image configs through the build \(BuildKit's gateway API\), which bktd at unix:\/\/.* does not serve; build this target without --addr$/m);
  });
});

describe('the daemon store: du, prune, history', () => {
  it('bkt du (BKT_HOST) lists the daemon\'s records; prune --filter removes only those it selects', async () => {
    const du = await bkt(['du'], { BKT_HOST: addr });
    expect(du.code, du.stderr).toBe(0);
    const ids = du.stdout
      .split('\n')
      .slice(1)
      .filter((l) => l !== '' && !/^(Shared|Private|Reclaimable|Total):/.test(l))
      .map((l) => l.split(/\s+/)[0]!.replace(/\*$/, ''));
    const records = (await control.diskUsage()).record;
    expect(records.length).toBeGreaterThan(0);
    expect(ids.sort()).toEqual(records.map((r) => r.ID).sort());
    expect(du.stdout).toMatch(/^Total:\s+\S+/m);

    const local = records.filter((r) => r.RecordType === 'source.local').map((r) => r.ID);
    expect(local.length).toBeGreaterThan(0);
    const prune = await bkt(['prune', '--addr', addr, '--filter', 'type=source.local']);
    expect(prune.code, prune.stderr).toBe(0);
    for (const id of local) expect(prune.stdout).toContain(id);
    expect((await control.diskUsage()).record.filter((r) => r.RecordType === 'source.local')).toEqual([]);
    expect((await control.diskUsage()).record.some((r) => r.RecordType === 'regular')).toBe(true);
  });

  it('bkt history ls / inspect / logs read the daemon\'s history', async () => {
    const ls = await bkt(['history', 'ls', '--addr', addr, '--format', 'json']);
    expect(ls.code, ls.stderr).toBe(0);
    const builds = ls.stdout.trim().split('\n').map((l) => JSON.parse(l) as { ref: string; status: string; name: string });
    const failed = builds.find((b) => b.status === 'failed');
    expect(failed, ls.stdout).toBeDefined();
    const inspect = await bkt(['history', 'inspect', failed!.ref, '--addr', addr]);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(inspect.stdout).toMatch(/^Status:\s+Error$/m);
    expect(inspect.stdout).toMatch(/^#\d+\s+ERROR\s+false\s+\S*\s+\[2\/2\] RUN for i in/m);
    const logs = await bkt(['history', 'logs', failed!.ref, '--addr', addr]);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/^#\d+ \d+\.\d+ line 30$/m);
    expect(logs.stdout).toMatch(/^#\d+ ERROR: .*exit code: 3$/m);
  });
});

describe('Ctrl-C', () => {
  it('SIGINT to the CLI cancels the remote build: exit 130, the daemon records it cancelled and stops its container', async () => {
    const dir = join(work, 'sleeping');
    await mkdir(dir);
    await writeFile(join(dir, 'Dockerfile'), `FROM ${busybox.reference}\nRUN echo sleeping now && sleep 120\n`);
    const run = startBkt(['build', '--addr', addr, '--progress', 'plain', dir], work);
    await run.waitFor(/sleeping now/);
    const sentAt = Date.now();
    run.proc.kill('SIGINT');
    const r = await run.proc;
    expect(r.exitCode, run.stderr()).toBe(130);
    expect(Date.now() - sentAt).toBeLessThan(5000);
    expect(run.stderr()).toMatch(/^bkt: build interrupted by SIGINT$/m);
    expect(run.stderr()).toMatch(/^#\d+ CANCELED$/m);

    // The daemon's own view: the newest build is cancelled, and no container of it runs.
    let newest: { status: string; name: string } | undefined;
    for (let i = 0; i < 50 && newest?.status !== 'cancelled'; i++) {
      const ls = await bkt(['history', 'ls', '--addr', addr, '--format', 'json']);
      newest = JSON.parse(ls.stdout.split('\n')[0]!) as { status: string; name: string };
      if (newest.status !== 'cancelled') await new Promise((res) => setTimeout(res, 200));
    }
    expect(newest).toMatchObject({ status: 'cancelled', name: 'Dockerfile' });
    // The record can be written while the cancelled step's container is being deleted: give the deletion 5 s.
    let containers = await runcContainers(daemonRoot);
    for (let i = 0; i < 25 && containers.length > 0; i++) {
      await new Promise((res) => setTimeout(res, 200));
      containers = await runcContainers(daemonRoot);
    }
    expect(containers).toEqual([]);
  });
});

describe('a client in its own mount namespace', () => {
  it('sends the context and receives the type=local output over the session: its directories are on a tmpfs only its namespace has', async () => {
    const priv = join(work, 'private');
    await mkdir(priv);
    // In a new mount namespace: a tmpfs over `private` holding the context and the output, then the build through the daemon.
    const script = [
      'set -e',
      'mount -t tmpfs -o size=64m bkt-client-e2e "$PRIV"',
      'mkdir "$PRIV/ctx"',
      'echo "made in namespace $(readlink /proc/self/ns/mnt)" > "$PRIV/ctx/note.txt"',
      'printf \'FROM %s\\nCOPY note.txt /in/\\nRUN tr a-z A-Z < /in/note.txt > /shouted.txt\\n\' "$BASE" > "$PRIV/ctx/Dockerfile"',
      'node "$BKT" build --addr "$ADDR" --progress plain -o type=local,dest="$PRIV/out" "$PRIV/ctx"',
      'readlink /proc/self/ns/mnt',
      'cat "$PRIV/out/in/note.txt" "$PRIV/out/shouted.txt"',
    ].join('\n');
    const r = await execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], {
      env: { PRIV: priv, BKT, ADDR: addr, BASE: busybox.reference, BKT_DEBUG: '' },
      reject: false,
    });
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
    const [clientNamespace, note, shouted] = r.stdout.trim().split('\n');
    expect(clientNamespace).toMatch(/^mnt:\[\d+\]$/);
    expect(note).toBe(`made in namespace ${clientNamespace}`);
    expect(shouted).toBe(`MADE IN NAMESPACE ${clientNamespace!.toUpperCase()}`);
    expect(r.stderr).toMatch(/^#\d+ \[3\/3\] RUN tr a-z A-Z/m);

    // The daemon runs in this process's mount namespace, where `private` is an empty directory.
    const ours = await readlink('/proc/self/ns/mnt');
    expect(await readlink(`/proc/${daemon.proc.pid}/ns/mnt`)).toBe(ours);
    expect(clientNamespace).not.toBe(ours);
    expect(await readdir(priv)).toEqual([]);
  });
});
