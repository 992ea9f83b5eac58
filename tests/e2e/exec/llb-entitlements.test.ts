/**
 * `--allow` grants entitlements to any build (issue 10): a marshalled
 * definition (`--llb`) or a config target whose step asks for host
 * networking or insecure mode runs with it once granted, and without the
 * grant fails with the entitlement error, before any step runs.
 */
import { readlinkSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { local } from '@bkt/llb';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';

const CAP_SYS_ADMIN = 21n;
let work: string;

beforeAll(async () => {
  work = await tempDir('exec-llb-entitlements');
  await makeBusyboxRootfs(join(work, 'rootfs'));
  const rootfs = local('rootfs');
  await writeFile(join(work, 'host-network.pb'), rootfs.run({ shell: 'readlink /proc/self/ns/net > /netns', network: 'host' }).root().marshalBytes());
  await writeFile(join(work, 'insecure.pb'), rootfs.run({ shell: 'grep ^CapEff: /proc/self/status > /caps', security: 'insecure' }).root().marshalBytes());
});

afterAll(async () => {
  await removeDir(work);
});

function build(def: string, out: string, ...args: string[]) {
  return bkt(['build', '--llb', def, '--local', 'rootfs=rootfs', '--root', join(work, 'store'), '--progress', 'plain', '-o', `type=local,dest=${out}`, ...args], { cwd: work });
}

describe('bkt build --llb --allow', () => {
  it('network.host: the step runs in the host network namespace', async () => {
    const r = await build('host-network.pb', 'out-net', '--allow', 'network.host');
    expect(r.code, r.stderr).toBe(0);
    expect((await readFile(join(work, 'out-net/netns'), 'utf8')).trim()).toBe(readlinkSync('/proc/self/ns/net'));
  });

  it('security.insecure: the step has every capability (CAP_SYS_ADMIN among them)', async () => {
    const r = await build('insecure.pb', 'out-insecure', '--allow', 'security.insecure');
    expect(r.code, r.stderr).toBe(0);
    const caps = BigInt(`0x${(await readFile(join(work, 'out-insecure/caps'), 'utf8')).split(/\s+/)[1]}`);
    expect((caps >> CAP_SYS_ADMIN) & 1n).toBe(1n);
  });

  it('without the grant (or with the other one) the same definition fails with the entitlement error', async () => {
    for (const [def, entitlement, other] of [
      ['host-network.pb', 'network.host', 'security.insecure'],
      ['insecure.pb', 'security.insecure', 'network.host'],
    ]) {
      for (const extra of [[], ['--allow', other]]) {
        const r = await build(def, 'out-denied', ...extra);
        expect(r.code, r.stderr).toBe(1);
        expect(r.stderr).toMatch(new RegExp(`^error: .*needs entitlement ${entitlement.replace('.', '\\.')}, which the build did not grant .*pass --allow ${entitlement.replace('.', '\\.')}`, 'm'));
      }
    }
  });

  it('an unknown entitlement is an error naming it, before anything is built', async () => {
    const r = await build('host-network.pb', 'out-unknown', '--allow', 'network.host,device');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: --allow device: unknown entitlement \(network\.host, security\.insecure\)$/m);
    expect(r.stderr).not.toMatch(/^#\d/m);
  });
});

describe('bkt build TARGET --allow', () => {
  it('grants a config target the entitlement', async () => {
    const project = join(work, 'project');
    await makeBusyboxRootfs(join(project, 'rootfs'));
    await writeFile(
      join(project, 'bkt.config.ts'),
      `import { defineConfig } from '@bkt/core';
import { local } from '@bkt/llb';
export default defineConfig({
  targets: {
    probe: {
      localDirs: { rootfs: 'rootfs' },
      build: local('rootfs').run({ shell: 'readlink /proc/self/ns/net > /netns', network: 'host' }).root(),
      outputs: [{ type: 'local', dest: 'out' }],
    },
  },
});
`,
    );
    const denied = await bkt(['build', 'probe', '--root', join(work, 'store'), '--progress', 'plain'], { cwd: project });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/needs entitlement network\.host/);
    const r = await bkt(['build', 'probe', '--allow', 'network.host', '--root', join(work, 'store'), '--progress', 'plain'], { cwd: project });
    expect(r.code, r.stderr).toBe(0);
    expect((await readFile(join(project, 'out/netns'), 'utf8')).trim()).toBe(readlinkSync('/proc/self/ns/net'));
  });
});
