/**
 * Escape sequences in Dockerfile text and RUN output never reach the
 * terminal raw: in plain and tty modes every control character from the
 * build is shown in caret notation (`^[`), in the step list, the output
 * lines, the failed step's report, the final error and `bkt du --verbose`;
 * rawjson keeps the
 * bytes as they were (base64 log data).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type RegistryServer } from '@bkt/testkit';
import { bkt, removeDir, tempDir } from '../helpers.js';

let registry: RegistryServer;
let work: string;
let context: string;

/** OSC 0 (set window title), clear screen, and a C1 CSI: what a hostile build would print. */
const TITLE = '\x1b]0;pwned\x07';
const CLEAR = '\x1b[2J';

beforeAll(async () => {
  registry = await startRegistry();
  const busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('security-escapes');
  context = join(work, 'ctx');
  await mkdir(context);
  await writeFile(
    join(context, 'Dockerfile'),
    [
      `FROM ${busybox.reference}`,
      // The step name carries raw escapes from the Dockerfile text; the output carries them from printf.
      `RUN echo "name ${TITLE}${CLEAR}" >/dev/null && printf 'out \\033]0;pwned\\007\\033[2J\\n'`,
      `RUN echo "${TITLE}" >/dev/null && printf 'failing \\033]0;pwned\\007\\n' && exit 3`,
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

const build = (progress: string) => bkt(['build', '--root', join(work, `store-${progress}`), '--progress', progress, context], { cwd: work });

describe('control characters from the build', () => {
  it('plain: none reaches the terminal; each is shown in caret notation', async () => {
    const r = await build('plain');
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]/);
    expect(r.stderr).toContain('RUN echo "name ^[]0;pwned^G^[[2J"');
    expect(r.stderr).toMatch(/#\d+ \d+\.\d{3} out \^\[\]0;pwned\^G\^\[\[2J/);
    // The failed step's report and the final error.
    expect(r.stderr).toContain('failing ^[]0;pwned^G');
    expect(r.stderr).toMatch(/^error: Dockerfile:3: .*RUN echo "\^\[\]0;pwned\^G" .*exit code: 3/m);
  });

  it("tty: only the display's own cursor and colour sequences", async () => {
    const r = await build('tty');
    expect(r.code).toBe(1);
    const withoutOwn = r.stderr.replace(/\x1b\[(\d+A|2K|J|\d+m)/g, '');
    expect(withoutOwn).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]/);
    expect(withoutOwn).toContain('^[]0;pwned^G');
  });

  it('bkt du --verbose: step descriptions in caret notation', async () => {
    expect((await build('plain')).code).toBe(1); // its first RUN (the step with raw escapes in its name) is in the store
    const r = await bkt(['du', '--verbose', '--root', join(work, 'store-plain')], { cwd: work });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]/);
    expect(r.stdout).toContain('^[]0;pwned^G');
  });

  it('rawjson: the bytes as they were', async () => {
    const r = await build('rawjson');
    expect(r.code).toBe(1);
    const objs = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, { name?: string; data?: string }[]>);
    const names = objs.flatMap((o) => o.vertexes ?? []).map((v) => v.name ?? '');
    expect(names.some((n) => n.includes(`${TITLE}${CLEAR}`))).toBe(true);
    const output = objs.flatMap((o) => o.logs ?? []).map((l) => Buffer.from(l.data ?? '', 'base64').toString()).join('');
    expect(output).toContain(`out ${TITLE}${CLEAR}`);
  });
});
