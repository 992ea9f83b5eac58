import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { main } from '../program.js';

let work: string;
let registry: RegistryServer;
let busybox: PushedImage;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-cli-du-'));
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'test/busybox');
});
afterAll(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

async function run(args: string[], stdin = '') {
  let stdout = '';
  let stderr = '';
  const code = await main(args, {
    stdin: Readable.from([Buffer.from(stdin)]),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    cwd: work,
  });
  return { code, stdout, stderr };
}

/** The `Type:` of each record `bkt du --verbose` prints, by ID. */
function typesOf(verbose: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const block of verbose.split('\n\n')) {
    const id = /^ID: +(\S+)$/m.exec(block)?.[1];
    const type = /^Type: +(\S+)$/m.exec(block)?.[1];
    if (id && type) out.set(id, type);
  }
  return out;
}

describe('du / prune and cache mounts', () => {
  it('du lists a RUN --mount=type=cache directory with the solver records; prune removes it', async () => {
    const root = join(work, 'store');
    await mkdir(join(work, 'ctx'));
    await writeFile(join(work, 'ctx/Dockerfile'), `FROM ${busybox.reference}\nRUN --mount=type=cache,id=bkt-du-test,target=/cache dd if=/dev/zero of=/cache/blob bs=1024 count=64\n`);
    const build = await run(['build', '--root', root, '--progress', 'plain', '-o', `type=local,dest=${join(work, 'out')}`, join(work, 'ctx')]);
    expect(build.code, build.stderr).toBe(0);

    const types = typesOf((await run(['du', '--verbose', '--root', root])).stdout);
    const caches = [...types].filter(([, t]) => t === 'exec.cachemount').map(([id]) => id);
    expect(caches).toHaveLength(1);
    expect([...types.values()].some((t) => t !== 'exec.cachemount')).toBe(true); // merged with the solver's records
    const du = await run(['du', '--root', root]);
    expect(du.stdout).toMatch(new RegExp(`^${caches[0]}\\* +true +6\\d(\\.\\d+)?kB `, 'm'));

    // Used just now: kept by --keep-duration, removed by a plain prune.
    const kept = await run(['prune', '--keep-duration', '1h', '--root', root]);
    expect(kept.stdout).not.toContain(caches[0]);
    const pruned = await run(['prune', '--root', root]);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(pruned.stdout).toContain(caches[0]);
    expect(typesOf((await run(['du', '--verbose', '--root', root])).stdout).has(caches[0]!)).toBe(false);
    expect((await readdir(join(root, 'cachemounts')).catch(() => [])).filter((n) => !n.startsWith('.'))).toEqual([]);
  });
});

describe('prune --filter (buildx semantics)', () => {
  it('removes only the records every filter matches; the others stay', async () => {
    const root = join(work, 'store-filter');
    await mkdir(join(work, 'ctx-filter'), { recursive: true });
    await writeFile(join(work, 'ctx-filter/Dockerfile'), `FROM ${busybox.reference}\nRUN --mount=type=cache,id=bkt-filter-test,target=/cache echo x > /cache/x && echo y > /y\n`);
    const build = await run(['build', '--root', root, '--progress', 'plain', join(work, 'ctx-filter')]);
    expect(build.code, build.stderr).toBe(0);
    const before = typesOf((await run(['du', '--verbose', '--root', root])).stdout);
    const caches = [...before].filter(([, t]) => t === 'exec.cachemount').map(([id]) => id);
    expect(caches).toHaveLength(1);

    const pruned = await run(['prune', '--filter', 'type=exec.cachemount', '--root', root]);
    expect(pruned.code, pruned.stderr).toBe(0);
    const after = typesOf((await run(['du', '--verbose', '--root', root])).stdout);
    expect([...after.keys()].sort()).toEqual([...before.keys()].filter((id) => id !== caches[0]).sort());

    const none = await run(['prune', '--filter', 'type!=regular', '--filter', 'description~=^no such', '--root', root]);
    expect(none.code, none.stderr).toBe(0);
    expect(typesOf((await run(['du', '--verbose', '--root', root])).stdout).size).toBe(after.size);
  });

  it.each([
    ['nokey', 'expected KEY=VALUE, KEY!=VALUE or KEY~=REGEXP'],
    ['colour=red', 'unknown key "colour" (known: until, id, parents'],
    ['description~=(', 'invalid regular expression'],
    ['until!=1h', 'until takes a duration'],
  ])('refuses --filter %s with an error naming it, touching nothing', async (filter, message) => {
    const r = await run(['prune', '--filter', filter, '--root', join(work, 'store-untouched')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`--filter "${filter}": ${message}`);
    expect(existsSync(join(work, 'store-untouched'))).toBe(false);
  });
});
