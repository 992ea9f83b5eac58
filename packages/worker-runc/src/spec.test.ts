/** The OCI spec's seccomp filter: the syscall conventions it names. */
import { describe, expect, it } from 'vitest';
import { buildSpec, type SpecInput } from './spec.js';

const input: SpecInput = {
  rootfs: '/rootfs',
  args: ['/bin/true'],
  env: [],
  cwd: '/',
  user: { uid: 0, gid: 0, additionalGids: [], home: '/' },
  hostname: 'h',
  mounts: [],
  etcFiles: { hosts: '/b/hosts', resolvConf: '/b/resolv.conf' },
  ulimits: [],
  cgroupsPath: '/bkt/x',
  netns: 'new',
  security: 'sandbox',
  pidsLimit: 0,
};

const NATIVE: Record<string, string[]> = {
  x64: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  arm64: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
};

describe('seccomp filter', () => {
  it("names this kernel's syscall conventions only (all of them: 32-bit binaries included)", () => {
    const seccomp = (buildSpec(input).linux as { seccomp: { architectures: string[]; syscalls: unknown[] } }).seccomp;
    expect(seccomp.architectures).toEqual(NATIVE[process.arch] ?? expect.arrayContaining(['SCMP_ARCH_X86_64', 'SCMP_ARCH_AARCH64']));
    expect(seccomp.syscalls.length).toBeGreaterThan(0);
  });

  it('is absent in insecure mode', () => {
    expect((buildSpec({ ...input, security: 'insecure' }).linux as { seccomp?: unknown }).seccomp).toBeUndefined();
  });
});
