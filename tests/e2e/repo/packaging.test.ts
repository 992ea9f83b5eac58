/**
 * What each published package would ship (`npm pack --dry-run`, after the
 * build): no test or test-helper file, and no code of another package or of
 * a devDependency bundled into its dist — every source a dist file's source
 * map names lies under the package's own src/. An executable's bundle
 * (`dist-bin/`, the `bkt` command as one entry) holds its runtime
 * dependencies' code too, by design, but never a test file or the code of a
 * package that is only a devDependency.
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

/** The name in the nearest package.json at or above `file`'s directory. */
function packageOf(file: string): string | undefined {
  for (let d = dirname(file); d !== dirname(d); d = dirname(d)) {
    const pj = join(d, 'package.json');
    if (existsSync(pj)) {
      const { name } = JSON.parse(readFileSync(pj, 'utf8')) as { name?: string };
      if (name) return name;
    }
  }
  return undefined;
}

describe.each(PACKAGES.map((dir) => [relative(REPO, dir), dir]))('%s as published', (_name, dir) => {
  it('holds no test or test-helper file, and only its own code', async () => {
    const files = await packedFiles(dir);
    expect(files.some((f) => f.startsWith('dist/')), 'built: run npm run build first').toBe(true);
    expect(files.filter((f) => TEST_FILE.test(f))).toEqual([]);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
    const devOnly = new Set(Object.keys(pkg.devDependencies ?? {}).filter((d) => !(d in (pkg.dependencies ?? {}))));
    const foreign: string[] = [];
    for (const map of files.filter((f) => f.endsWith('.js.map'))) {
      const { sources } = JSON.parse(readFileSync(join(dir, map), 'utf8')) as { sources: string[] };
      for (const source of sources) {
        const abs = resolve(dirname(join(dir, map)), source);
        const file = relative(dir, abs);
        if (TEST_FILE.test(file)) foreign.push(`${map}: ${file}`);
        else if (map.startsWith('dist-bin/')) {
          const owner = packageOf(abs);
          if (owner === undefined || devOnly.has(owner) || /(^|\/)(testing|testdata)\//.test(file)) foreign.push(`${map}: ${file} (${owner ?? 'no package'})`);
        } else if (!file.startsWith('src/')) foreign.push(`${map}: ${file}`);
      }
    }
    expect(foreign).toEqual([]);
  });
});
