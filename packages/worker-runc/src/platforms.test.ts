import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBktError } from '@bkt/core';
import { formatPlatform } from '@bkt/oci';
import {
  executablePlatforms,
  executionOf,
  handlerPlatforms,
  parseBinfmtHandler,
  readBinfmtHandlers,
  requireExecutable,
  workerPlatforms,
} from './platforms.js';

// Magic and mask of handlers as the kernel shows them once Debian's qemu-user-static is registered
// (qemu-x86_64 as a non-amd64 host would have it).
const HANDLERS: Record<string, { magic: string; mask: string }> = {
  'qemu-aarch64': { magic: '7f454c460201010000000000000000000200b700', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  'qemu-arm': { magic: '7f454c4601010100000000000000000002002800', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  'qemu-s390x': { magic: '7f454c4602020100000000000000000000020016', mask: 'fffffffffffffffcfffffffffffffffffffeffff' },
  'qemu-riscv64': { magic: '7f454c460201010000000000000000000200f300', mask: 'ffffffffffffff00fffffffffffffffffeffffff' },
  'qemu-mipsn32el': {
    magic: '7f454c46010101000000000000000000020008000000000000000000000000000000000020',
    mask: 'ffffffffffffff00fefffffffffffffffeffffff0000000000000000000000000000000020',
  },
  'qemu-mipsel': {
    magic: '7f454c46010101000000000000000000020008000000000000000000000000000000000000',
    mask: 'ffffffffffffff00fefffffffffffffffeffffff0000000000000000000000000000000020',
  },
  'qemu-x86_64': { magic: '7f454c4602010100000000000000000002003e00', mask: 'fffffffffffefe00fffffffffffffffffeffffff' },
  'qemu-m68k': { magic: '7f454c4601020100000000000000000000020004', mask: 'ffffffffffffff00fffffffffffffffffffeffff' },
};

function handlerText(name: string, opts: { enabled?: boolean; flags?: string } = {}): string {
  const h = HANDLERS[name]!;
  return [
    opts.enabled === false ? 'disabled' : 'enabled',
    `interpreter /usr/libexec/qemu-binfmt/${name.slice(5)}-binfmt-P`,
    `flags: ${opts.flags ?? 'POF'}`,
    'offset 0',
    `magic ${h.magic}`,
    `mask ${h.mask}`,
    '',
  ].join('\n');
}

const AMD64 = { os: 'linux', architecture: 'amd64' };
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bkt-binfmt-'));
  await writeFile(join(dir, 'status'), 'enabled\n');
  await writeFile(join(dir, 'register'), '');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const names = (ps: { os: string; architecture: string; variant?: string }[]) => ps.map(formatPlatform);

describe('binfmt_misc handlers', () => {
  it('parses the kernel text of a handler', () => {
    const h = parseBinfmtHandler('qemu-aarch64', handlerText('qemu-aarch64'));
    expect(h).toMatchObject({ name: 'qemu-aarch64', enabled: true, interpreter: '/usr/libexec/qemu-binfmt/aarch64-binfmt-P', flags: 'POF', offset: 0 });
    expect(h.magic.toString('hex')).toBe(HANDLERS['qemu-aarch64']!.magic);
    expect(parseBinfmtHandler('x', handlerText('qemu-arm', { enabled: false })).enabled).toBe(false);
  });

  it('maps ELF machines to platforms by class and byte order; n32 MIPS and unknown machines to none', () => {
    const of = (name: string) => names(handlerPlatforms(parseBinfmtHandler(name, handlerText(name))));
    expect(of('qemu-aarch64')).toEqual(['linux/arm64']);
    expect(of('qemu-arm')).toEqual(['linux/arm/v7', 'linux/arm/v6']);
    expect(of('qemu-s390x')).toEqual(['linux/s390x']);
    expect(of('qemu-riscv64')).toEqual(['linux/riscv64']);
    expect(of('qemu-mipsel')).toEqual(['linux/mipsle']);
    expect(of('qemu-mipsn32el')).toEqual([]);
    expect(of('qemu-m68k')).toEqual([]);
    const extension = parseBinfmtHandler('jar', 'enabled\ninterpreter /usr/bin/jexec\nflags: \nextension .jar\n');
    expect(handlerPlatforms(extension)).toEqual([]);
  });

  it('reads no handler where binfmt_misc is not mounted', async () => {
    expect(await readBinfmtHandlers(join(dir, 'absent'))).toEqual([]);
  });
});

describe('executable platforms', () => {
  it('an amd64 host runs amd64 and 386 natively, plus each architecture of an enabled handler with the F flag', async () => {
    await writeFile(join(dir, 'qemu-aarch64'), handlerText('qemu-aarch64'));
    await writeFile(join(dir, 'qemu-arm'), handlerText('qemu-arm'));
    await writeFile(join(dir, 'qemu-s390x'), handlerText('qemu-s390x', { enabled: false }));
    await writeFile(join(dir, 'qemu-riscv64'), handlerText('qemu-riscv64', { flags: 'PO' }));
    await writeFile(join(dir, 'qemu-x86_64'), handlerText('qemu-x86_64'));
    const p = await executablePlatforms({ binfmtDir: dir, host: AMD64 });
    expect(names(workerPlatforms(p))).toEqual(['linux/amd64', 'linux/386', 'linux/arm64', 'linux/arm/v7', 'linux/arm/v6']);
    expect(p.emulated.map((e) => e.handler)).toEqual(['qemu-aarch64', 'qemu-arm', 'qemu-arm']);
    expect(p.unusable.map((u) => [formatPlatform(u.platform), u.handler])).toEqual([
      ['linux/riscv64', 'qemu-riscv64'],
      ['linux/s390x', 'qemu-s390x'],
    ]);
    expect(executionOf(p, { os: 'linux', architecture: 'amd64', variant: 'v2' })).toBe('native');
    expect(executionOf(p, { os: 'linux', architecture: 'arm', variant: 'v5' })).toMatchObject({ handler: 'qemu-arm' });
    expect(executionOf(p, { os: 'linux', architecture: 's390x' })).toBeUndefined();
  });

  it('a native platform is accepted without reading binfmt_misc; an unemulated one is refused naming it and how to enable emulation', async () => {
    await requireExecutable({ os: 'linux', architecture: '386' }, { binfmtDir: join(dir, 'absent'), host: AMD64 });
    await requireExecutable(undefined, { binfmtDir: dir, host: AMD64 });
    const err = await requireExecutable({ os: 'linux', architecture: 'arm64' }, { binfmtDir: dir, host: AMD64 }).catch((e: unknown) => e);
    expect(isBktError(err, 'UNIMPLEMENTED'), String(err)).toBe(true);
    expect((err as Error).message).toContain('the step is for linux/arm64, which this machine cannot execute: no binfmt_misc handler emulates arm64');
    expect((err as Error).message).toContain('it runs linux/amd64, linux/386');
    expect((err as Error).message).toContain('qemu-user-static');
    await writeFile(join(dir, 'qemu-aarch64'), handlerText('qemu-aarch64'));
    await requireExecutable({ os: 'linux', architecture: 'arm64' }, { binfmtDir: dir, host: AMD64 });
  });

  it('names a handler that exists but cannot serve containers', async () => {
    await writeFile(join(dir, 'qemu-riscv64'), handlerText('qemu-riscv64', { flags: 'P' }));
    const err = await requireExecutable({ os: 'linux', architecture: 'riscv64' }, { binfmtDir: dir, host: AMD64 }).catch((e: unknown) => e);
    expect((err as Error).message).toContain('its binfmt_misc handler qemu-riscv64 is registered without the F flag');
  });

  it('refuses another OS outright', async () => {
    const err = await requireExecutable({ os: 'windows', architecture: 'amd64' }, { binfmtDir: dir, host: AMD64 }).catch((e: unknown) => e);
    expect(isBktError(err, 'UNIMPLEMENTED'), String(err)).toBe(true);
    expect((err as Error).message).toContain('the step is for windows/amd64, but runc runs linux steps only');
  });

  it("this machine's platforms start with the host's", async () => {
    const p = await executablePlatforms();
    expect(workerPlatforms(p)[0]).toEqual(p.native[0]);
  });
});
