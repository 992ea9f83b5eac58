import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const committedDir = join(packageDir, 'src', 'gen');

/** Paths of all files under root, relative to it, sorted. */
function listFiles(root: string, dir = root): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...listFiles(root, full));
    else out.push(relative(root, full));
  }
  return out.sort();
}

describe('generated code', () => {
  const tempDir = mkdtempSync(join(tmpdir(), 'bkt-api-gen-'));
  afterAll(() => rmSync(tempDir, { recursive: true, force: true }));

  it('is what `npm run generate` produces from proto/ (regenerate and commit src/gen otherwise)', () => {
    const outDir = join(tempDir, 'gen');
    execFileSync(process.execPath, [join(packageDir, 'scripts', 'generate.mjs'), outDir], { stdio: 'pipe' });

    const fresh = listFiles(outDir);
    const committed = listFiles(committedDir);
    expect(fresh.length).toBeGreaterThan(10);
    expect(committed, 'files in src/gen differ from the generator output').toEqual(fresh);
    for (const file of fresh) {
      const same = readFileSync(join(outDir, file)).equals(readFileSync(join(committedDir, file)));
      expect(same, `src/gen/${file} differs from the generator output`).toBe(true);
    }
  });
});
