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

  it("loading Control's codecs does not load all of ops.proto's (the split module), and ops still exports every message", async () => {
    // The static imports reachable from src/control.ts.
    const seen = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const m of readFileSync(file, 'utf8').matchAll(/^(?:import|export) (?!type )[^;]*?from ["'](\.[^"']+)\.js["'];$/gms)) visit(resolve(dirname(file), `${m[1]}.ts`));
    };
    visit(join(packageDir, 'src', 'control.ts'));
    const pbDir = join(committedDir, 'github.com/moby/buildkit/solver/pb');
    expect(seen).toContain(join(pbDir, 'definition.ts'));
    expect(seen).not.toContain(join(pbDir, 'ops.ts'));
    // Nor does @bkt/api/definition, the subpath a client passing a definition on imports.
    seen.clear();
    visit(join(packageDir, 'src', 'definition.ts'));
    expect(seen).toContain(join(pbDir, 'definition.ts'));
    expect(seen).not.toContain(join(pbDir, 'ops.ts'));

    const pb = await import('./pb.js');
    const definition = await import('./gen/github.com/moby/buildkit/solver/pb/definition.js');
    for (const name of ['Definition', 'OpMetadata', 'Source', 'SourceInfo', 'Platform', 'ProgressGroup', 'Op', 'ExecOp', 'FileOp']) expect(pb, name).toHaveProperty(name);
    expect(pb.Definition).toBe(definition.Definition);
    const subpath = await import('./definition.js');
    for (const name of ['Definition', 'OpMetadata', 'Source', 'SourceInfo', 'Locations', 'Platform', 'ProgressGroup']) expect(subpath[name as keyof typeof subpath], name).toBe(pb[name as keyof typeof pb]);
    expect(subpath).not.toHaveProperty('Op');
    const def = pb.Definition.fromPartial({ def: [Buffer.from([1, 2])], metadata: { 'sha256:x': { ignoreCache: true } } });
    const bytes = pb.Definition.encode(def).finish();
    const decoded = pb.Definition.decode(bytes);
    expect(decoded.metadata['sha256:x']?.ignoreCache).toBe(true);
    expect(Buffer.from(pb.Definition.encode(decoded).finish())).toEqual(Buffer.from(bytes));
  });
});
