import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseAddHost, parseBuildArgs, parseBuildContext, prepareDockerfileSolve, type DockerfileFlags } from './dockerfile.js';
import { metadataJson, planOutputs } from './outputs.js';
import { loadSecrets, parseSecret } from './secrets.js';
import { openSshAgents, parseSsh } from './ssh.js';

let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-cli-df-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const noFlags: DockerfileFlags = {
  buildArg: [],
  buildContext: [],
  secret: [],
  ssh: [],
  label: [],
  cache: true,
  noCacheFilter: [],
  addHost: [],
  allow: [],
  ulimit: [],
};

function prepare(flags: Partial<DockerfileFlags>, context: string, stdin = '', env: NodeJS.ProcessEnv = {}) {
  return prepareDockerfileSolve({ ...noFlags, ...flags }, { context, cwd: work, stdin: Readable.from([Buffer.from(stdin)]), env });
}

describe('Dockerfile flags → dockerfile.v0 attrs', () => {
  it('maps every flag as buildx does', async () => {
    await mkdir(join(work, 'ctx'));
    await mkdir(join(work, 'df'));
    await mkdir(join(work, 'other'));
    await writeFile(join(work, 'df/Build.df'), 'FROM scratch\n');
    const s = await prepare(
      {
        file: 'df/Build.df',
        target: 'app',
        buildArg: ['A=1', 'B=x=y', 'FROM_ENV', 'UNSET'],
        buildContext: ['img=docker-image://busybox:latest', 'src=other', 'repo=https://example.com/r.git#main'],
        label: ['org.x=1', 'empty'],
        noCacheFilter: ['a,b', 'c'],
        addHost: ['db:10.0.0.2', 'v6:fe80::1'],
        platform: 'linux/arm64',
        allow: ['network.host'],
        shmSize: '64m',
        ulimit: ['nofile=1024:2048'],
        network: 'none',
        pull: true,
      },
      'ctx',
      '',
      { FROM_ENV: 'env-value' },
    );
    try {
      expect(s.frontendAttrs).toEqual({
        filename: 'Build.df',
        target: 'app',
        'build-arg:A': '1',
        'build-arg:B': 'x=y',
        'build-arg:FROM_ENV': 'env-value',
        'label:org.x': '1',
        'label:empty': '',
        'context:img': 'docker-image://busybox:latest',
        'context:src': 'local:src',
        'context:repo': 'https://example.com/r.git#main',
        platform: 'linux/arm64',
        'no-cache': 'a,b,c',
        'add-hosts': 'db=10.0.0.2,v6=fe80::1',
        'shm-size': String(64 * 1024 * 1024),
        ulimit: 'nofile=1024:2048',
        'force-network-mode': 'none',
        'image-resolve-mode': 'pull',
      });
      expect(s.localDirs).toEqual({ context: join(work, 'ctx'), dockerfile: join(work, 'df'), src: join(work, 'other') });
      expect(s.entitlements).toEqual(['network.host']);
    } finally {
      await s.close();
    }
  });

  it('--no-cache is no-cache= (every stage); the Dockerfile defaults to CONTEXT/Dockerfile', async () => {
    const s = await prepare({ cache: false, noCacheFilter: ['x'] }, '.');
    expect(s.frontendAttrs).toEqual({ filename: 'Dockerfile', 'no-cache': '' });
    expect(s.localDirs).toEqual({ context: work, dockerfile: work });
    await s.close();
  });

  it('SOURCE_DATE_EPOCH in the environment is the build arg of that name unless one is given (as buildx)', async () => {
    const fromEnv = await prepare({}, '.', '', { SOURCE_DATE_EPOCH: '1700000000' });
    expect(fromEnv.frontendAttrs['build-arg:SOURCE_DATE_EPOCH']).toBe('1700000000');
    await fromEnv.close();
    const given = await prepare({ buildArg: ['SOURCE_DATE_EPOCH=42'] }, '.', '', { SOURCE_DATE_EPOCH: '1700000000' });
    expect(given.frontendAttrs['build-arg:SOURCE_DATE_EPOCH']).toBe('42');
    await given.close();
    const unset = await prepare({}, '.', '', {});
    expect(Object.keys(unset.frontendAttrs).filter((k) => k.startsWith('build-arg:'))).toEqual([]);
    await unset.close();
  });

  it('-f - and CONTEXT - write stdin to a temp Dockerfile removed by close()', async () => {
    const s = await prepare({ file: '-' }, '.', 'FROM scratch\n');
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(join(s.localDirs.dockerfile!, 'Dockerfile'), 'utf8')).toBe('FROM scratch\n');
    await s.close();
    const { existsSync } = await import('node:fs');
    expect(existsSync(s.localDirs.dockerfile!)).toBe(false);

    const t = await prepare({}, '-', 'FROM scratch\n');
    expect(t.localDirs.context).not.toBe(work);
    expect(t.frontendAttrs.filename).toBe('Dockerfile');
    await t.close();
    expect(existsSync(t.localDirs.context!)).toBe(false);
  });

  it('refuses a missing context, a missing -f, an unknown entitlement and a bad --network', async () => {
    await expect(prepare({}, 'nope')).rejects.toThrow(/context nope is not a directory/);
    await expect(prepare({ file: 'Nope.df' }, '.')).rejects.toThrow(/Dockerfile Nope.df does not exist/);
    await expect(prepare({ allow: ['root.everything'] }, '.')).rejects.toThrow(/--allow root.everything: unknown entitlement/);
    await expect(prepare({ network: 'bridge' }, '.')).rejects.toThrow(/--network bridge/);
  });

  it('parses --build-arg, --build-context and --add-host values', () => {
    expect(parseBuildArgs(['K', 'L=', 'M=a=b'], { K: 'k' })).toEqual({ K: 'k', L: '', M: 'a=b' });
    expect(() => parseBuildArgs(['=x'])).toThrow(/--build-arg =x/);
    expect(parseBuildContext('base=docker-image://alpine', work)).toEqual({ name: 'base', target: 'docker-image://alpine', local: false });
    expect(parseBuildContext('t=target:build', work).local).toBe(false);
    expect(parseBuildContext('g=git@github.com:o/r.git', work).local).toBe(false);
    expect(parseBuildContext('here=.', work)).toEqual({ name: 'here', target: work, local: true });
    expect(() => parseBuildContext('gone=./gone', work)).toThrow(/neither a directory/);
    expect(() => parseBuildContext('noval', work)).toThrow(/NAME=VALUE/);
    expect(parseAddHost('h:1.2.3.4')).toBe('h=1.2.3.4');
    expect(parseAddHost('h=::1')).toBe('h=::1');
    expect(parseAddHost('h:[::1]')).toBe('h=::1');
    expect(() => parseAddHost('nohost')).toThrow(/HOST:IP/);
  });
});

describe('--secret', () => {
  it('parses ids, files and env vars with buildx defaults', () => {
    expect(parseSecret('id=a,src=s/a.txt', work)).toEqual({ id: 'a', file: join(work, 's/a.txt') });
    expect(parseSecret('src=/x/token', work)).toEqual({ id: 'token', file: '/x/token' });
    expect(parseSecret('id=tok,env=TOKEN', work)).toEqual({ id: 'tok', env: 'TOKEN' });
    expect(parseSecret('type=env,id=TOKEN', work)).toEqual({ id: 'TOKEN', env: 'TOKEN' });
    expect(parseSecret('type=env,src=TOKEN', work)).toEqual({ id: 'TOKEN', env: 'TOKEN' });
    expect(parseSecret('id=HOME_SET', work, { HOME_SET: '1' })).toEqual({ id: 'HOME_SET', env: 'HOME_SET' });
    expect(parseSecret('id=file.txt', work, {})).toEqual({ id: 'file.txt', file: join(work, 'file.txt') });
    expect(() => parseSecret('id=a,type=ssh', work)).toThrow(/unsupported secret type "ssh"/);
    expect(() => parseSecret('id=a,color=red', work)).toThrow(/unexpected key "color"/);
    expect(() => parseSecret('justtext', work)).toThrow(/key=value/);
  });

  it('loads values up front and serves them by id', async () => {
    await writeFile(join(work, 's.txt'), 'file-secret');
    const p = await loadSecrets([{ id: 'f', file: join(work, 's.txt') }, { id: 'e', env: 'E' }], { E: 'env-secret' });
    expect(new TextDecoder().decode((await p.get('f'))!)).toBe('file-secret');
    expect(new TextDecoder().decode((await p.get('e'))!)).toBe('env-secret');
    expect(await p.get('none')).toBeNull();
    await expect(loadSecrets([{ id: 'x', file: join(work, 'missing') }])).rejects.toThrow(/--secret id=x: cannot read .*missing: ENOENT/);
    await expect(loadSecrets([{ id: 'x', env: 'NOPE' }], {})).rejects.toThrow(/NOPE is not set/);
  });
});

describe('--ssh', () => {
  it('forwards $SSH_AUTH_SOCK for default and a given socket for an id', async () => {
    const sock = join(work, 'agent.sock');
    const server = createServer().listen(sock);
    await new Promise((r) => server.once('listening', r));
    try {
      expect(parseSsh('default', work)).toEqual({ id: 'default', paths: [] });
      expect(parseSsh('git=agent.sock', work)).toEqual({ id: 'git', paths: [sock] });
      const agents = await openSshAgents([parseSsh('default', work), parseSsh('git=agent.sock', work)], { SSH_AUTH_SOCK: '/run/agent' });
      expect(await agents.socketPath('default')).toBe('/run/agent');
      expect(await agents.socketPath('git')).toBe(sock);
      expect(await agents.socketPath('other')).toBeNull();
      await agents.close();
      await expect(openSshAgents([parseSsh('default', work)], {})).rejects.toThrow(/SSH_AUTH_SOCK is not set/);
      await expect(openSshAgents([parseSsh('x=missing', work)], {})).rejects.toThrow(/does not exist/);
    } finally {
      server.close();
    }
  });

  it('loads key files into an ssh-agent it starts and stops', async () => {
    const { execFileSync } = await import('node:child_process');
    const key = join(work, 'id_ed25519');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const agents = await openSshAgents([parseSsh(`k=${key}`, work)], {});
    const sock = (await agents.socketPath('k'))!;
    const listed = execFileSync('ssh-add', ['-l'], { env: { SSH_AUTH_SOCK: sock } }).toString();
    expect(listed).toMatch(/ED25519/);
    await agents.close();
    const { existsSync } = await import('node:fs');
    expect(existsSync(sock)).toBe(false);
  });
});

describe('outputs', () => {
  it('combines --output, -t and --push as buildx', async () => {
    expect(await planOutputs([], { tags: [], push: false })).toEqual([]);
    expect(await planOutputs([], { tags: ['a:1', 'b:2'], push: false })).toEqual([{ type: 'image', name: 'a:1,b:2' }]);
    expect(await planOutputs([], { tags: ['a'], push: true })).toEqual([{ type: 'image', push: 'true', name: 'a' }]);
    expect(await planOutputs([{ type: 'registry', name: 'r/x' }], { tags: [], push: false })).toEqual([{ type: 'image', name: 'r/x', push: 'true' }]);
    expect(await planOutputs([{ type: 'oci', dest: '/o.tar' }], { tags: ['t'], push: false })).toEqual([{ type: 'oci', dest: '/o.tar', name: 't' }]);
    expect(await planOutputs([{ type: 'local', dest: '/o' }], { tags: ['t'], push: false })).toEqual([{ type: 'local', dest: '/o' }]);
    await expect(planOutputs([{ type: 'local', dest: '/o' }], { tags: ['t'], push: true })).rejects.toThrow(/--push and an output of type=local/);
    await expect(planOutputs([], { tags: [], push: true })).rejects.toThrow(/needs a name/);
  });

  it('writes base64 JSON values of the exporter response as objects (buildx metadata file)', () => {
    const descriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'sha256:ab', size: 3 };
    const meta = metadataJson(
      { 'containerimage.digest': 'sha256:ab', 'containerimage.descriptor': Buffer.from(JSON.stringify(descriptor)).toString('base64'), 'image.name': 'x' },
      'ref1',
    );
    expect(meta).toEqual({ 'containerimage.digest': 'sha256:ab', 'containerimage.descriptor': descriptor, 'image.name': 'x', 'bkt.build.ref': 'ref1' });
  });
});
