/**
 * A step that fails (a process exiting 3 in runc): the CLI prints the step's
 * name and the last lines of its output, then the error, and exits 1.
 */
import { copyFile, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from './helpers.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('failing-step');
  await mkdir(join(work, 'rootfs/bin'), { recursive: true });
  await copyFile('/bin/busybox', join(work, 'rootfs/bin/busybox'));
  await symlink('busybox', join(work, 'rootfs/bin/sh'));
  await writeFile(
    join(work, 'bkt.config.ts'),
    `import { defineConfig } from '@bkt/core';
import { local, merge } from '@bkt/llb';
export default defineConfig({
  targets: {
    default: {
      localDirs: { rootfs: 'rootfs' },
      build: local('rootfs')
        .run({ args: ['/bin/sh', '-c', 'for i in $(seq 1 30); do echo line $i; done; echo giving up >&2; exit 3'], customName: 'count then fail' })
        .root(),
    },
    parallel: {
      localDirs: { rootfs: 'rootfs' },
      build: merge(
        ['a', 'b'].map((n) =>
          local('rootfs')
            .run({
              // Each waits (through a shared cache mount) until both have written, so both exit 1 before either is stopped.
              args: ['/bin/sh', '-c', \`echo left > /stage-\${n}-left; mkdir -p /work-\${n}; echo more > /work-\${n}/file; touch /sync/\${n}; i=0; while [ ! -e /sync/a ] || [ ! -e /sync/b ]; do usleep 5000; i=\$((i+1)); [ \$i -gt 2000 ] && break; done; exit 1\`],
              mounts: [{ type: 'cache', target: '/sync', id: 'parallel-sync', sharing: 'shared' }],
              customName: \`stage \${n} fails\`,
            })
            .root(),
        ),
      ),
    },
  },
});
`,
  );
});

afterAll(async () => {
  await removeDir(work);
});

it('prints the failed step, its last output lines and the error, and exits 1', async () => {
  const r = await bkt(['build', '--root', join(work, 'store'), '--progress', 'plain'], { cwd: work });
  expect(r.code).toBe(1);
  const report = /------\n > (.*):\n([\s\S]*?)------\n/.exec(r.stderr);
  expect(report, r.stderr).not.toBeNull();
  expect(report![1]).toBe('count then fail');
  const lines = report![2]!.trim().split('\n');
  expect(lines.length).toBe(10);
  // The report is the last 10 lines of the step's output exactly as the live log showed them (`#N <secs> <line>`).
  // stdout and stderr are two pipes (runc copies each in its own goroutine), so where the stderr line falls
  // among the stdout lines is not fixed; the order within each stream is.
  const step = /^#(\d+) count then fail$/m.exec(r.stderr)![1];
  const live = [...r.stderr.matchAll(new RegExp(`^#${step} \\d+\\.\\d+ (.*)$`, 'gm'))].map((m) => m[1]);
  expect([...live].sort()).toEqual([...Array.from({ length: 30 }, (_, i) => `line ${i + 1}`), 'giving up'].sort());
  expect(lines).toEqual(live.slice(-10));
  const stdoutLines = lines.filter((l) => l !== 'giving up');
  expect(stdoutLines.at(-1)).toBe('line 30');
  expect(stdoutLines).toEqual(Array.from({ length: stdoutLines.length }, (_, i) => `line ${31 - stdoutLines.length + i}`));
  expect(r.stderr).toMatch(/^error: .*exit code: 3/m);
  expect(r.stderr).toMatch(/#\d+ ERROR: /);
});

it('two stages failing in parallel leave nothing they wrote in the store', async () => {
  const root = join(work, 'store-parallel');
  const r = await bkt(['build', '--root', root, '--progress', 'plain', 'parallel'], { cwd: work });
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(/^error: .*exit code: 1/m);
  // Every file under the store's snapshots: none is a tree a failed stage wrote.
  const files = (await readdir(join(root, 'snapshots'), { recursive: true })).map(String);
  expect(files.filter((f) => /stage-[ab]-left|work-[ab]/.test(f))).toEqual([]);
  const du = await bkt(['du', '--root', root, '--verbose'], { cwd: work });
  expect(du.code, du.stderr).toBe(0);
  // The cache mount's record names the command; no other record may (a kept tree's description is its mount and command).
  const records = du.stdout.split('\n\n').filter((r) => r.trim() !== '' && !/^Type:\s+exec\.cachemount$/m.test(r));
  expect(records.filter((r) => /stage-[ab]-left/.test(r))).toEqual([]);
});
