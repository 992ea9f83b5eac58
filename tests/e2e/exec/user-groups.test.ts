/**
 * USER and supplementary groups (issue 10), as BuildKit and runc resolve
 * them in the step's own /etc/passwd and /etc/group: a user given by name,
 * or by a uid alone, gets the groups /etc/group lists it in; `uid:gid` and
 * `name:group` get only that group.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('exec-user-groups');
  await makeBusyboxRootfs(join(work, 'ctx/rootfs'));
  await writeFile(
    join(work, 'ctx/Dockerfile'),
    [
      'FROM scratch',
      'COPY rootfs/ /',
      // Written by a step, so the groups come from the step's root, not from the context.
      `RUN echo 'app:x:1001:1001::/home/app:/bin/sh' >> /etc/passwd && printf 'app:x:1001:\\ndevs:x:2000:app\\nops:x:2001:root,app\\nothers:x:2002:user\\n' >> /etc/group && mkdir -m 777 /out`,
      'USER app',
      'RUN id > /out/by-name && grep ^Groups: /proc/self/status > /out/by-name.status',
      'USER 1001',
      'RUN id > /out/by-uid',
      'USER 1001:1001',
      'RUN id > /out/by-uid-gid',
      'USER app:devs',
      'RUN id > /out/by-name-group',
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  await removeDir(work);
});

describe('USER and /etc/group', () => {
  it('a user by name or by uid gets its supplementary groups; uid:gid and name:group only that group', async () => {
    const r = await bkt(['build', '--root', join(work, 'store'), '--progress', 'plain', '-o', `type=local,dest=${join(work, 'out')}`, 'ctx'], { cwd: work });
    expect(r.code, r.stderr).toBe(0);
    const read = (name: string) => readFile(join(work, 'out/out', name), 'utf8');
    expect(await read('by-name')).toBe('uid=1001(app) gid=1001(app) groups=1001(app),2000(devs),2001(ops)\n');
    // The kernel's view: exactly these supplementary groups (a process of root's would list none).
    expect((await read('by-name.status')).trim().split(/\s+/)).toEqual(['Groups:', '1001', '2000', '2001']);
    expect(await read('by-uid')).toBe('uid=1001(app) gid=1001(app) groups=1001(app),2000(devs),2001(ops)\n');
    expect(await read('by-uid-gid')).toBe('uid=1001(app) gid=1001(app) groups=1001(app)\n');
    expect(await read('by-name-group')).toBe('uid=1001(app) gid=2000(devs) groups=2000(devs)\n');
  });
});
