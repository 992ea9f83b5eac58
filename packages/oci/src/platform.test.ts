import { describe, expect, it } from 'vitest';
import { isBktError, type Platform } from '@bkt/core';
import { compatiblePlatforms, formatPlatform, hostPlatform, normalizePlatform, parsePlatform, platformMatcher } from './platform.js';

const p = (s: string) => parsePlatform(s);

describe('parsePlatform', () => {
  it.each([
    ['linux/amd64', 'linux/amd64'],
    ['Linux/X86_64', 'linux/amd64'],
    ['linux/x86-64', 'linux/amd64'],
    ['linux/amd64/v1', 'linux/amd64'],
    ['linux/amd64/v3', 'linux/amd64/v3'],
    ['linux/i386', 'linux/386'],
    ['linux/aarch64', 'linux/arm64'],
    ['linux/arm64/v8', 'linux/arm64'],
    ['linux/arm64/8', 'linux/arm64'],
    ['linux/arm64/v9.0', 'linux/arm64/v9'],
    ['linux/arm64/v8.2', 'linux/arm64/v8.2'],
    // A bare `arm` is arm/v7, as containerd normalizes it (one of the former copies left it without a variant).
    ['linux/arm', 'linux/arm/v7'],
    ['linux/arm/7', 'linux/arm/v7'],
    ['linux/arm/6', 'linux/arm/v6'],
    ['linux/armhf', 'linux/arm/v7'],
    ['linux/armel', 'linux/arm/v6'],
    ['macos/arm64', 'darwin/arm64'],
    ['windows/amd64', 'windows/amd64'],
    // An OS containerd does not know is taken as written in the two-part form.
    ['unknown/unknown', 'unknown/unknown'],
  ])('%s → %s', (spec, want) => {
    expect(formatPlatform(p(spec))).toBe(want);
  });

  it('reads a one-word OS with the host architecture, a one-word architecture with the host OS', () => {
    const host = hostPlatform();
    expect(p('linux')).toEqual({ ...host, os: 'linux' });
    expect(p('arm64')).toEqual({ os: host.os, architecture: 'arm64' });
    expect(p('aarch64')).toEqual({ os: host.os, architecture: 'arm64' });
    expect(p('arm')).toEqual({ os: host.os, architecture: 'arm', variant: 'v7' });
  });

  it('reads an OS version in parentheses', () => {
    expect(p('windows(10.0.17763)/amd64')).toEqual({ os: 'windows', osVersion: '10.0.17763', architecture: 'amd64' });
  });

  it.each([
    ['', 'is not an OS'],
    ['linux/', 'is not a valid component'],
    ['linux//v7', 'is not a valid component'],
    ['linux/amd64/v1/x', 'too many components'],
    ['linux/*', 'wildcards'],
    ['linux amd64', 'is not an OS'],
    ['notanarch', 'unknown operating system or architecture'],
  ])('refuses %j, naming it', (spec, why) => {
    let err: unknown;
    try {
      parsePlatform(spec);
    } catch (e) {
      err = e;
    }
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toContain(`"${spec}"`);
    expect((err as Error).message).toContain(why);
    expect((err as Error).message).toContain('os/arch[/variant]');
  });
});

describe('normalizePlatform', () => {
  it('keeps the OS version and features, drops an empty feature list', () => {
    expect(normalizePlatform({ os: 'Windows', architecture: 'AMD64', osVersion: '10.0', osFeatures: ['win32k'] })).toEqual({
      os: 'windows',
      architecture: 'amd64',
      osVersion: '10.0',
      osFeatures: ['win32k'],
    });
    expect(normalizePlatform({ os: 'linux', architecture: 'arm64', variant: 'v8', osFeatures: [] })).toEqual({ os: 'linux', architecture: 'arm64' });
  });

  it('gives a bare arm its default variant v7', () => {
    expect(normalizePlatform({ os: 'linux', architecture: 'arm' })).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
  });

  it('is idempotent', () => {
    for (const s of ['linux/arm', 'linux/arm64/v8', 'linux/x86_64', 'linux/arm64/v9.3']) {
      const once = p(s);
      expect(normalizePlatform(once)).toEqual(once);
    }
  });
});

describe('hostPlatform', () => {
  it('is this machine, normalized', () => {
    const host = hostPlatform();
    expect(host.os).toBe(process.platform);
    expect(host.architecture).toBe({ x64: 'amd64', arm64: 'arm64' }[process.arch as 'x64' | 'arm64'] ?? host.architecture);
    expect(normalizePlatform(host)).toEqual(host);
  });
});

describe('platform matching', () => {
  const names = (list: Platform[]) => list.map(formatPlatform);

  it('lists what runs on a platform, best first, as containerd', () => {
    expect(names(compatiblePlatforms(p('linux/amd64')))).toEqual(['linux/amd64', 'linux/386']);
    expect(names(compatiblePlatforms(p('linux/amd64/v3')))).toEqual(['linux/amd64/v3', 'linux/amd64/v2', 'linux/amd64', 'linux/386']);
    expect(names(compatiblePlatforms(p('linux/arm/v7')))).toEqual(['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
    expect(names(compatiblePlatforms(p('linux/arm64')))).toEqual(['linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
    expect(names(compatiblePlatforms(p('linux/arm64/v8.2')))).toEqual([
      'linux/arm64/v8.2', 'linux/arm64/v8.1', 'linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5',
    ]);
    expect(names(compatiblePlatforms(p('linux/arm64/v9.1')).slice(0, 4))).toEqual(['linux/arm64/v9.1', 'linux/arm64/v9', 'linux/arm64/v8.6', 'linux/arm64/v8.5']);
    expect(names(compatiblePlatforms(p('linux/s390x')))).toEqual(['linux/s390x']);
  });

  it('matches normalized forms and compatible variants, never another OS', () => {
    const arm64 = platformMatcher(p('linux/arm64'));
    expect(arm64.matches({ os: 'linux', architecture: 'aarch64', variant: 'v8' })).toBe(true);
    expect(arm64.matches({ os: 'linux', architecture: 'arm' })).toBe(true); // arm/v7
    expect(arm64.matches({ os: 'linux', architecture: 'amd64' })).toBe(false);
    expect(arm64.matches({ os: 'windows', architecture: 'arm64' })).toBe(false);

    const armv7 = platformMatcher(p('linux/arm/v7'));
    expect(armv7.matches({ os: 'linux', architecture: 'arm' })).toBe(true);
    expect(armv7.matches({ os: 'linux', architecture: 'arm', variant: 'v6' })).toBe(true);
    expect(armv7.matches({ os: 'linux', architecture: 'arm', variant: 'v8' })).toBe(false);

    // An amd64 host does not take an image that needs a newer amd64 level.
    expect(platformMatcher(p('linux/amd64')).matches(p('linux/amd64/v2'))).toBe(false);
    // A bare arm asks for arm/v7: an arm/v6 image runs, an arm/v8 one does not.
    expect(platformMatcher(p('linux/arm')).matches(p('linux/arm/v6'))).toBe(true);
    expect(platformMatcher(p('linux/arm/v6')).matches({ os: 'linux', architecture: 'arm' })).toBe(false);
  });

  it('orders candidates best first', () => {
    const m = platformMatcher(p('linux/arm64'));
    const candidates = ['linux/arm/v6', 'linux/amd64', 'linux/arm/v7', 'linux/arm64/v8'].map(p);
    expect(names(candidates.filter(m.matches).sort(m.compare))).toEqual(['linux/arm64', 'linux/arm/v7', 'linux/arm/v6']);
  });
});

// Moved from @bkt/llb's state.test.ts with its platform functions. The llb copy
// refused a one-word `linux`; containerd reads it as the host's architecture.
describe('platforms (as @bkt/llb tested them)', () => {
  it('normalizes as containerd does', () => {
    expect(normalizePlatform({ os: 'Linux', architecture: 'x86_64' })).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(normalizePlatform({ os: 'linux', architecture: 'aarch64', variant: 'v8' })).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(normalizePlatform({ os: 'linux', architecture: 'arm' })).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(normalizePlatform({ os: 'linux', architecture: 'armel' })).toEqual({ os: 'linux', architecture: 'arm', variant: 'v6' });
    expect(parsePlatform('linux/arm/v6')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v6' });
    expect(parsePlatform('linux')).toEqual({ ...hostPlatform(), os: 'linux' });
    expect(() => parsePlatform('linux/')).toThrow(/os\/arch/);
  });
});
