/**
 * Paths from a build that try to leave their root through the local
 * context: `../` names and symlinks (absolute, climbing, followed) resolve
 * inside the context and read no host file. Each case runs against a store
 * warmed by a good build, gets a clear error and exit code 1, writes nothing
 * to the store or the output, and prints no line of the host's /etc/passwd.
 */
import { readFileSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, copyOp, definition, expectBuildRejected, removeDir, sourceOp, tempDir } from '../helpers.js';

let work: string;
let root: string;
let context: string;

const contextSource = sourceOp('local://context');
const goodCopy = copyOp(contextSource, '/hello.txt', '/hello.txt');

beforeAll(async () => {
  work = await tempDir('security-context-escapes');
  root = join(work, 'store');
  context = join(work, 'ctx');
  await mkdir(context);
  await writeFile(join(context, 'hello.txt'), 'hello\n');
  await symlink('/etc', join(context, 'etc-abs'));
  await symlink('../../../../../../../../etc', join(context, 'etc-rel'));
  await symlink('/etc/passwd', join(context, 'passwd-link'));
  await writeFile(join(work, 'good.pb'), definition([contextSource, goodCopy], goodCopy));
  const r = await bkt(['build', '--llb', 'good.pb', '--local', `context=${context}`, '--root', root, '--progress', 'plain', '-o', 'type=local,dest=good-out'], { cwd: work });
  expect(r.stderr).toContain('solver time');
  expect(r.code).toBe(0);
  expect(readFileSync(join(work, 'good-out/hello.txt'), 'utf8')).toBe('hello\n');
});

afterAll(async () => {
  await removeDir(work);
});

const expectRejected = (args: string[], message: RegExp, opts: { input?: Uint8Array } = {}) => expectBuildRejected({ work, root }, args, message, opts);

describe('paths escaping their root', () => {
  it('a copy from ../../etc/passwd stays inside the context and finds nothing', async () => {
    const copy = copyOp(contextSource, '../../etc/passwd', '/passwd');
    await expectRejected(['--llb', '-', '--local', `context=${context}`], /passwd.*(not found|no such file)|(not found|no such file).*passwd/i, {
      input: definition([contextSource, copy], copy),
    });
  });

  it.each([
    ['an absolute symlink to /etc', 'etc-abs/passwd', false],
    ['a relative symlink climbing out', 'etc-rel/passwd', false],
    ['a followed symlink to /etc/passwd', 'passwd-link', true],
  ])('a copy through %s reads no host file', async (_what, src, followSymlink) => {
    const copy = copyOp(contextSource, src, '/passwd', { followSymlink });
    await expectRejected(['--llb', '-', '--local', `context=${context}`], /(not found|no such file)/i, {
      input: definition([contextSource, copy], copy),
    });
  });
});
