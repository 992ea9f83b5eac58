/**
 * A cache mount's `source=` without `from=` is a directory of the cache
 * (issue 10), and a step that plants symlinks in the cache cannot turn it
 * into a view of the host (the class of CVE-2024-23651): the path is
 * resolved inside the cache directory, a symlink followed as if the cache
 * were `/` (`/` and `../..` stay at the cache's top, an absolute path lands
 * under it), and the directory found is mounted through a held descriptor,
 * so a symlink swapped in between resolving and mounting changes nothing.
 *
 * A canary directory on the host holds a secret; every step that mounts a
 * planted `source=` lists and reads what it sees and writes a file. Nothing
 * of the host may be seen, nothing written may land outside the cache.
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';

let work: string;
let canary: string;
const SECRET = `host-secret-${randomBytes(6).toString('hex')}`;
/** Prefix of every file the steps write; none may appear on the host outside the store. */
const TOKEN = `written-${randomBytes(4).toString('hex')}`;
/** Entries of the host's (and the step's) `/` that a cache never holds. */
const ROOT_ENTRIES = ['bin', 'etc', 'proc', 'sys', 'usr'];

/** A shell line: lists and reads what /c shows into /out/NAME.*, then writes a file there. */
const probe = (name: string) =>
  `ls -a /c > /out/${name}.list; (cat /c/secret; cat /c${canary}/secret; cat /c/etc/hostname) > /out/${name}.read 2>/dev/null; touch /c/${TOKEN}-${name} 2>/dev/null; true`;

beforeAll(async () => {
  work = await tempDir('security-cache-subdir');
  canary = join(work, 'canary');
  await mkdir(canary);
  await writeFile(join(canary, 'secret'), SECRET);
  await makeBusyboxRootfs(join(work, 'ctx/rootfs'));
});

afterAll(async () => {
  await removeDir(work);
});

function hostUntouched(): void {
  expect(readdirSync(canary)).toEqual(['secret']);
  expect(readFileSync(join(canary, 'secret'), 'utf8')).toBe(SECRET);
  expect(readdirSync('/').filter((n) => n.startsWith(TOKEN))).toEqual([]);
  expect(readdirSync(work).filter((n) => n.startsWith(TOKEN))).toEqual([]);
}

function leftovers(root: string): { mounts: string[]; containers: string[] } {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4]?.startsWith(root));
  const containers = execFileSync('runc', ['--root', join(root, 'runc/state'), 'list', '-q'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  return { mounts, containers };
}

/** Builds `dockerfile` into `out-NAME`; whether it succeeded or not, nothing may stay mounted or running. */
async function buildAllowingFailure(name: string, dockerfile: string[]) {
  const file = join(work, `${name}.Dockerfile`);
  await writeFile(file, [...dockerfile, ''].join('\n'));
  const out = join(work, `out-${name}`);
  const root = join(work, 'store');
  const r = await bkt(['build', '--root', root, '--progress', 'plain', '-f', file, '-o', `type=local,dest=${out}`, 'ctx'], { cwd: work });
  expect(leftovers(root)).toEqual({ mounts: [], containers: [] });
  return { r, out };
}

async function build(name: string, dockerfile: string[]) {
  const { r, out } = await buildAllowingFailure(name, dockerfile);
  expect(r.code, r.stderr).toBe(0);
  return out;
}

/** Every `*.read` and `*.list` file the probes wrote, by name. */
async function seen(out: string): Promise<{ reads: Record<string, string>; lists: Record<string, string[]> }> {
  const reads: Record<string, string> = {};
  const lists: Record<string, string[]> = {};
  for (const f of await readdir(join(out, 'out'))) {
    const text = await readFile(join(out, 'out', f), 'utf8');
    if (f.endsWith('.read')) reads[f.slice(0, -5)] = text;
    if (f.endsWith('.list')) lists[f.slice(0, -5)] = text.split('\n').filter(Boolean);
  }
  return { reads, lists };
}

describe('cache mount source= planted with symlinks', () => {
  it('absolute, ../.. and host-path symlinks, and one swapped in between steps, all resolve inside the cache', async () => {
    const out = await build('planted', [
      'FROM scratch',
      'COPY rootfs/ /',
      'RUN mkdir /out',
      'RUN --mount=type=cache,id=planted,target=/c echo in-cache > /c/marker && mkdir /c/nested' +
        ` && ln -s / /c/abs && ln -s ../.. /c/up && ln -s ../../../../../../../../../..${canary} /c/deep && ln -s ${canary} /c/hostdir` +
        ' && ln -s ../../../../.. /c/nested/climb',
      `RUN --mount=type=cache,id=planted,target=/c,source=abs ${probe('abs')}`,
      `RUN --mount=type=cache,id=planted,target=/c,source=up ${probe('up')}`,
      `RUN --mount=type=cache,id=planted,target=/c,source=nested/climb/etc ${probe('climb')}`,
      `RUN --mount=type=cache,id=planted,target=/c,source=deep ${probe('deep')}`,
      `RUN --mount=type=cache,id=planted,target=/c,source=hostdir ${probe('hostdir')}`,
      // A real directory when first mounted, a symlink to the host's canary when mounted again.
      `RUN --mount=type=cache,id=planted,target=/c,source=swap ${probe('swap-before')}`,
      `RUN --mount=type=cache,id=planted,target=/c rm -rf /c/swap && ln -s ${canary} /c/swap`,
      `RUN --mount=type=cache,id=planted,target=/c,source=swap ${probe('swap-after')}`,
      `RUN --mount=type=cache,id=planted,target=/c find /c -name '${TOKEN}-*' | sort > /out/landed`,
    ]);
    hostUntouched();
    const { reads, lists } = await seen(out);
    expect(Object.keys(reads).sort()).toEqual(['abs', 'climb', 'deep', 'hostdir', 'swap-after', 'swap-before', 'up']);
    for (const text of Object.values(reads)) expect(text).toBe('');
    for (const list of Object.values(lists)) {
      expect(list).not.toContain('secret');
      for (const entry of ROOT_ENTRIES) expect(list).not.toContain(entry);
    }
    // `/` and `../..` are the cache's top.
    expect(lists.abs).toContain('marker');
    expect(lists.up).toContain('marker');
    // Each write landed inside the cache: at its top, or under the host path re-rooted in the cache
    // (swap-before's went into the directory the next step removed).
    expect((await readFile(join(out, 'out/landed'), 'utf8')).split('\n').filter(Boolean)).toEqual(
      [
        `/c/${TOKEN}-abs`,
        `/c/${TOKEN}-up`,
        `/c/etc/${TOKEN}-climb`,
        `/c${canary}/${TOKEN}-deep`,
        `/c${canary}/${TOKEN}-hostdir`,
        `/c${canary}/${TOKEN}-swap-after`,
      ].sort(),
    );
  });
});

/** The stages of a race: `swapper` runs `loop` until the victim's steps (each mounting source=race) are done. */
function raceStages(loop: string, victims: number): string[] {
  const swap =
    'mkdir /out; end=$(($(date +%s)+60)); n=0; ' +
    `while [ ! -e /c/victim-done ] && [ $(date +%s) -lt $end ]; do ${loop}; n=$((n+1)); done; ` +
    '[ -e /c/victim-done ] && echo "overlapped after $n swaps" > /out/swapper';
  return [
    'FROM scratch AS base',
    'COPY rootfs/ /',
    'FROM base AS swapper',
    `RUN --mount=type=cache,id=race,target=/c ${swap}`,
    'FROM base AS victim',
    'RUN mkdir /out',
    ...Array.from({ length: victims }, (_, i) => `RUN --mount=type=cache,id=race,target=/c,source=race ${probe(`race-${i}`)}`),
    'RUN --mount=type=cache,id=race,target=/c touch /c/victim-done',
    'FROM scratch',
    'COPY --from=swapper /out/ /out/',
    'COPY --from=victim /out/ /out/',
  ];
}

describe('cache mount source= swapped while it is being mounted', () => {
  it('a step that keeps swapping the directory for symlinks to the host and to / never exposes the host', async () => {
    // The directory steps aside by a rename (never removed), symlinks stand in its place, then a new one.
    const loop = `mv /c/race /c/aside-$n; ln -s ${canary} /c/race; rm /c/race; ln -s / /c/race; rm /c/race; mkdir /c/race`;
    const out = await build('race', raceStages(`(${loop}) 2>/dev/null`, 16));
    hostUntouched();
    expect(await readFile(join(out, 'out/swapper'), 'utf8')).toMatch(/^overlapped after [1-9]\d* swaps\n$/);
    const { reads, lists } = await seen(out);
    expect(Object.keys(reads)).toHaveLength(16);
    for (const text of Object.values(reads)) expect(text).toBe('');
    for (const list of Object.values(lists)) {
      expect(list).not.toContain('secret');
      for (const entry of ROOT_ENTRIES) expect(list).not.toContain(entry);
    }
  });

  it('a step that removes the directory while it is mounted makes the step fail or see the cache, never the host', async () => {
    const loop = `rm -rf /c/race; ln -s ${canary} /c/race; rm -f /c/race; ln -s / /c/race; rm -f /c/race; mkdir /c/race`;
    const { r, out } = await buildAllowingFailure('race-removed', raceStages(`(${loop}) 2>/dev/null`, 8));
    hostUntouched();
    if (r.code !== 0) {
      // A directory removed before the container started cannot be mounted: the step fails, naming the mount.
      expect(r.stderr).toMatch(/^error: .*(cache-\d+.* to rootfs at "\/c".*no such file or directory|cache mount \/c \(source=\/race\): \/race was removed each time)/im);
      return;
    }
    const { reads, lists } = await seen(out);
    for (const text of Object.values(reads)) expect(text).toBe('');
    for (const list of Object.values(lists)) for (const entry of ['secret', ...ROOT_ENTRIES]) expect(list).not.toContain(entry);
  });
});
