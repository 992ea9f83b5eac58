import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { local, merge, mkdir as mkdirAction, mkfile, copy, scratch } from '@bkt/llb';
import { main, interruption } from './program.js';

let work: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-cli-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function run(args: string[], stdin: Uint8Array = new Uint8Array(), signal?: AbortSignal) {
  let stdout = '';
  let stderr = '';
  const code = await main(
    args,
    {
      stdin: Readable.from([Buffer.from(stdin)]),
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      cwd: work,
    },
    signal,
  );
  return { code, stdout, stderr };
}

function helloDefinition(): Uint8Array {
  const ctx = local('context');
  const a = scratch().file(mkdirAction('/etc', 0o755).mkfile('/etc/motd', 0o640, 'hi\n'));
  const b = scratch().file(copy(ctx, '/input.txt', '/input.txt'));
  return merge([a, b]).marshalBytes();
}

describe('bkt (in-process)', () => {
  it('prints its version and help', async () => {
    const version = await run(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+/);
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/build \[options\] \[target\|context\]/);
    expect(help.stdout).toMatch(/\bdu\b/);
    expect(help.stdout).toMatch(/\bprune\b/);
  });

  it('rejects an unknown option and an unknown --progress mode with exit 1', async () => {
    expect((await run(['build', '--bogus'])).code).toBe(1);
    const r = await run(['build', '--progress', 'fancy']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/fancy/);
  });

  it('builds --llb from stdin into a local dir and a tar, then du and prune', async () => {
    const root = join(work, 'store');
    await mkdir(join(work, 'ctx'));
    await writeFile(join(work, 'ctx/input.txt'), 'from the context\n');
    const def = helloDefinition();
    const r = await run(
      ['build', '--llb', '-', '--local', 'context=ctx', '--root', root, '--progress', 'plain', '-o', 'type=local,dest=out', '-o', 'type=tar,dest=out.tar', '--metadata-file', 'meta.json'],
      def,
    );
    expect(r.stderr).toMatch(/solver time: \d+\.\d{3}s/);
    expect(r.code).toBe(0);
    expect(await readFile(join(work, 'out/etc/motd'), 'utf8')).toBe('hi\n');
    expect(await readFile(join(work, 'out/input.txt'), 'utf8')).toBe('from the context\n');
    expect((await readFile(join(work, 'out.tar'))).length).toBeGreaterThan(1024);
    expect(JSON.parse(await readFile(join(work, 'meta.json'), 'utf8'))).toHaveProperty('bkt.build.ref');
    expect(r.stderr).toMatch(/^#\d+ DONE \d+\.\ds$/m);

    const again = await run(['build', '--llb', '-', '--local', 'context=ctx', '--root', root, '--progress', 'plain'], def);
    expect(again.code).toBe(0);
    expect(again.stderr).not.toMatch(/DONE/);
    expect(again.stderr).toMatch(/CACHED/);

    const du = await run(['du', '--root', root]);
    expect(du.code).toBe(0);
    expect(du.stdout).toMatch(/^ID +RECLAIMABLE +SIZE +LAST ACCESSED$/m);
    expect(du.stdout).toMatch(/^Total: +\S+$/m);
    const records = du.stdout.split('\n').filter((l) => /^\S+ +(true|false) /.test(l));
    expect(records.length).toBeGreaterThan(0);

    const verbose = await run(['du', '--verbose', '--root', root]);
    expect(verbose.stdout).toMatch(/^Usage count: +\d+$/m);
    expect(verbose.stdout).toMatch(/^Type: +\S+/m);

    const kept = await run(['prune', '--keep-duration', '1h', '--root', root]);
    expect(kept.code).toBe(0);
    expect(kept.stdout).toMatch(/^Total:\t0B$/m); // everything was used just now

    const pruned = await run(['prune', '--all', '--root', root]);
    expect(pruned.code).toBe(0);
    expect(pruned.stdout.split('\n').filter((l) => /^\S+ +(true|false) /.test(l)).length).toBe(records.length);
    const after = await run(['du', '--root', root]);
    expect(after.stdout).toMatch(/^Total: +0B$/m);

    expect((await run(['prune', '--keep-storage', 'lots', '--root', root])).stderr).toMatch(/invalid size "lots"/);
  });

  it('finds the project with -C and --config, resolving outputs against the project dir', async () => {
    const root = join(work, 'store');
    await mkdir(join(work, 'proj/ctx'), { recursive: true });
    await writeFile(join(work, 'proj/ctx/input.txt'), 'project context\n');
    const bytes = Buffer.from(helloDefinition()).toString('base64');
    const config = (dest: string) =>
      `export default { targets: { default: { build: () => new Uint8Array(Buffer.from('${bytes}', 'base64')), localDirs: { context: 'ctx' }, outputs: [{ type: 'local', dest: '${dest}' }] } } };\n`;
    await writeFile(join(work, 'proj/bkt.config.mjs'), config('out'));
    const r = await run(['build', '-C', 'proj', '--root', root, '--progress', 'plain']);
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    expect(await readFile(join(work, 'proj/out/input.txt'), 'utf8')).toBe('project context\n');

    await writeFile(join(work, 'other.config.mjs'), config('elsewhere'));
    const o = await run(['build', '-C', 'proj', '--config', 'other.config.mjs', '--root', root, '--progress', 'quiet', '-o', 'type=tar,dest=x.tar']);
    expect(o.code).toBe(0);
    expect((await readFile(join(work, 'x.tar'))).length).toBeGreaterThan(0); // -o wins over the config's outputs, relative to cwd
    expect(await readdir(join(work, 'proj'))).not.toContain('elsewhere');

    const missing = await run(['build', 'nope', '-C', 'proj', '--root', root]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no target "nope" .*\(targets: default\)/);
  });

  it('builds a Dockerfile (-f, stdin, CONTEXT) and tells a context from a config target', async () => {
    const root = join(work, 'store');
    await mkdir(join(work, 'app'), { recursive: true });
    await writeFile(join(work, 'app/input.txt'), 'app context\n');
    await writeFile(join(work, 'app/Dockerfile'), 'FROM scratch\nARG GREETING=hi\nCOPY input.txt /in/\nLABEL greeting=$GREETING\n');
    const built = await run(['build', '--root', root, '--progress', 'plain', '-o', 'type=local,dest=out', 'app']);
    expect(built.stderr).toMatch(/\[1\/1\] COPY input.txt \/in\//);
    expect(built.code).toBe(0);
    expect(await readFile(join(work, 'out/in/input.txt'), 'utf8')).toBe('app context\n');

    const fromStdin = await run(
      ['build', '--root', root, '--progress', 'plain', '-f', '-', '--build-arg', 'GREETING=hello', '-o', 'type=oci,dest=img.tar', '--iidfile', 'iid', '--metadata-file', 'meta.json', 'app'],
      Buffer.from('FROM scratch\nARG GREETING\nCOPY input.txt /from-stdin\nLABEL greeting=$GREETING\n'),
    );
    expect(fromStdin.stderr).toMatch(/solver time/);
    expect(fromStdin.code).toBe(0);
    const meta = JSON.parse(await readFile(join(work, 'meta.json'), 'utf8')) as Record<string, unknown>;
    expect(await readFile(join(work, 'iid'), 'utf8')).toBe(meta['containerimage.config.digest']);
    expect(meta['containerimage.descriptor']).toMatchObject({ mediaType: 'application/vnd.oci.image.manifest.v1+json' });

    // With a config: a target name builds the target, a directory that is no target is a context.
    const bytes = Buffer.from(helloDefinition()).toString('base64');
    await writeFile(
      join(work, 'bkt.config.mjs'),
      `export default { targets: { default: { build: () => new Uint8Array(Buffer.from('${bytes}', 'base64')), localDirs: { context: 'app' } } } };\n`,
    );
    await writeFile(join(work, 'app/input.txt'), 'changed\n');
    const target = await run(['build', '--root', root, '--progress', 'quiet', '-o', 'type=local,dest=t']);
    expect(target.code).toBe(0);
    expect(await readdir(join(work, 't'))).toEqual(['etc', 'input.txt']);
    const context = await run(['build', '--root', root, '--progress', 'quiet', '-o', 'type=local,dest=c', 'app']);
    expect(context.code).toBe(0);
    expect(await readdir(join(work, 'c'))).toEqual(['in']);

    const noContext = await run(['build', '--root', root, '-f', 'app/Dockerfile']);
    expect(noContext.code).toBe(1);
    expect(noContext.stderr).toMatch(/needs a CONTEXT/);
    const bad = await run(['build', '--root', root, '--progress', 'quiet', '-f', '-', 'app'], Buffer.from('FROM scratch\nCOPY missing.txt /\n'));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/Dockerfile:2/);
  });

  it('exits 130 when interrupted', async () => {
    const ac = new AbortController();
    ac.abort(interruption('SIGINT'));
    const r = await run(['build', '--llb', '-', '--local', `context=${work}`, '--root', join(work, 'store')], helloDefinition(), ac.signal);
    expect(r.code).toBe(130);
    expect(await readdir(work)).not.toContain('out');
  });
});
