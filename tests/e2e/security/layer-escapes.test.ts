/**
 * Image layers that try to write outside the snapshot, through the CLI: `../`
 * names and hard links out fail with an error naming the entry; writes
 * through absolute and climbing symlinks land inside the root where the
 * container sees them (as containerd resolves them). Either way a sentinel
 * directory outside the store stays empty and every blob of the store hashes
 * to its name. (Whiteouts naming `..`: whiteouts.test.ts.)
 */
import { mkdir, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { buildImageOnly, corruptBlobs, pushCraftedImage, type LayerEntry } from '../images/lib.js';

let registry: RegistryServer;
let work: string;
/** A directory outside every store and project: hostile layers aim here. */
let sentinel: string;

beforeAll(async () => {
  registry = await startRegistry();
  work = await tempDir('security-layer-escapes');
  sentinel = join(work, 'sentinel');
  await mkdir(sentinel);
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

const buildFrom = (ref: string, out?: string) => buildImageOnly(work, ref, out);

/** The final error line of a failed build. */
const errorOf = (stderr: string) => stderr.split('\n').filter((l) => /^error\b/i.test(l)).join('\n') || stderr;

describe('layers that escape the snapshot fail and write nothing outside', () => {
  const climb = () => '../'.repeat(40) + sentinel.slice(1);
  const cases: [string, () => LayerEntry[][], string][] = [
    ['a ../ entry', () => [[{ name: `${climb()}/dotdot`, type: 'file', body: 'pwned\n' }]], 'dotdot'],
    ['a hard link to a host file', () => [[{ name: 'passwd', type: 'link', linkname: `${'../'.repeat(40)}etc/passwd` }]], 'passwd'],
  ];
  for (const [what, layers, entry] of cases) {
    it(what, async () => {
      const repo = `e2e/evil-${entry.replace(/\W/g, '-')}`;
      await pushCraftedImage(registry.host, repo, 'v1', layers());
      const r = await buildFrom(`${registry.host}/${repo}:v1`);
      expect(r.code).toBe(1);
      const msg = errorOf(r.stderr);
      expect(msg).toContain(entry);
      expect(msg).toMatch(/refused: .*climbs out of the root/);
      expect(await readdir(sentinel)).toEqual([]);
      expect(await corruptBlobs(r.root)).toEqual([]);
    });
  }
});

describe('writes through symlinks pointing outside land inside the root (containerd resolves them there)', () => {
  const climb = () => '../'.repeat(40) + sentinel.slice(1);
  /** [what, layers, the symlink, the file written through it] */
  const cases: [string, () => LayerEntry[][], string, string][] = [
    [
      'a file written through an absolute symlink',
      () => [[{ name: 'escape', type: 'symlink', linkname: sentinel }, { name: 'escape/abs', type: 'file', body: 'inside\n' }]],
      'escape',
      'abs',
    ],
    [
      'a file written through an absolute symlink of an earlier layer',
      () => [[{ name: 'escape', type: 'symlink', linkname: sentinel }], [{ name: 'escape/later', type: 'file', body: 'inside\n' }]],
      'escape',
      'later',
    ],
    [
      'a file written through a symlink climbing above the root',
      () => [[{ name: 'up', type: 'symlink', linkname: climb() }, { name: 'up/rel', type: 'file', body: 'inside\n' }]],
      'up',
      'rel',
    ],
  ];
  for (const [what, layers, link, file] of cases) {
    it(what, async () => {
      const repo = `e2e/symlink-${file}`;
      await pushCraftedImage(registry.host, repo, 'v1', layers());
      const out = join(work, `out-${file}`);
      const r = await buildFrom(`${registry.host}/${repo}:v1`, out);
      expect(r.stderr).not.toMatch(/^error/im);
      expect(r.code).toBe(0);
      // The file is where the container sees it: `<root>${sentinel}/FILE`; the link is kept as it was.
      expect(await readFile(join(out, sentinel, file), 'utf8')).toBe('inside\n');
      const [made] = layers()[0]!.filter((e) => e.name === link) as { linkname: string }[];
      expect(await readlink(join(out, link))).toBe(made!.linkname);
      expect(await readdir(sentinel)).toEqual([]);
      expect(await corruptBlobs(r.root)).toEqual([]);
    });
  }

  it("a later layer writing under an earlier layer's var/run -> /run (as on Debian images)", async () => {
    const repo = 'e2e/var-run';
    await pushCraftedImage(registry.host, repo, 'v1', [
      [
        { name: 'run/', type: 'directory' },
        { name: 'var/', type: 'directory' },
        { name: 'var/run', type: 'symlink', linkname: '/run' },
      ],
      [
        { name: 'var/run/app/', type: 'directory' },
        { name: 'var/run/app/pid', type: 'file', body: '42\n' },
      ],
    ]);
    const out = join(work, 'out-var-run');
    const r = await buildFrom(`${registry.host}/${repo}:v1`, out);
    expect(r.stderr).not.toMatch(/^error/im);
    expect(r.code).toBe(0);
    expect(await readFile(join(out, 'run/app/pid'), 'utf8')).toBe('42\n');
    expect(await readlink(join(out, 'var/run'))).toBe('/run');
  });
});
