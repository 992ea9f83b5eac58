import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from './program.js';

let work: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-cli-platform-'));
  await writeFile(join(work, 'Dockerfile'), 'FROM scratch\n');
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function build(args: string[]) {
  let stderr = '';
  const code = await main(['build', '--root', join(work, 'store'), ...args, work], {
    stdin: Readable.from([]),
    stdout: { write: () => undefined },
    stderr: { write: (s: string) => (stderr += s) },
    cwd: work,
  });
  return { code, stderr };
}

describe('bkt build --platform', () => {
  it('several platforms, as a comma list or the flag repeated, are an error naming the flag; nothing is built', async () => {
    for (const args of [['--platform', 'linux/amd64,linux/arm64'], ['--platform', 'linux/amd64', '--platform', 'linux/arm64']]) {
      const r = await build(args);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        'error: --platform linux/amd64,linux/arm64: several platforms in one build are not supported yet; build each platform separately, one --platform per build\n',
      );
    }
    expect(await readdir(work)).toEqual(['Dockerfile']);
  });
});
