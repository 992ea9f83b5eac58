/**
 * What each published package would ship (`npm pack --dry-run`, after the
 * build): no test or test-helper file, and no code of another package or of
 * a devDependency bundled into its dist — every source a dist file's source
 * map names lies under the package's own src/.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers.js';

const PACKAGES = readdirSync(join(REPO, 'packages'))
  .map((name) => join(REPO, 'packages', name))
  .filter((dir) => existsSync(join(dir, 'package.json')))
  .filter((dir) => !(JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { private?: boolean }).private);

const TEST_FILE = /\.test\.|\.test-util\.|(^|\/)(testutil|test-helpers)\.|(^|\/)testdata\//;

/** The files `npm pack` would put in the tarball, relative to the package. */
async function packedFiles(dir: string): Promise<string[]> {
  const { stdout } = await execa('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir });
  return (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
}

describe.each(PACKAGES.map((dir) => [relative(REPO, dir), dir]))('%s as published', (_name, dir) => {
  it('holds no test or test-helper file, and only its own code', async () => {
    const files = await packedFiles(dir);
    expect(files.some((f) => f.startsWith('dist/')), 'built: run npm run build first').toBe(true);
    expect(files.filter((f) => TEST_FILE.test(f))).toEqual([]);
    const foreign: string[] = [];
    for (const map of files.filter((f) => f.endsWith('.js.map'))) {
      const { sources } = JSON.parse(readFileSync(join(dir, map), 'utf8')) as { sources: string[] };
      for (const source of sources) {
        const file = relative(dir, resolve(dirname(join(dir, map)), source));
        if (!file.startsWith('src/') || TEST_FILE.test(file)) foreign.push(`${map}: ${file}`);
      }
    }
    expect(foreign).toEqual([]);
  });
});
