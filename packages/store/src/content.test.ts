import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileContentStore } from './content.js';

/** The paths this process has open under `dir`. */
function openUnder(dir: string): string[] {
  const fds = readdirSync('/proc/self/fd');
  return fds
    .map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return '';
      }
    })
    .filter((p) => p.startsWith(dir + '/'));
}

describe('FileContentStore.write on a full filesystem', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bkt-content-test-'));
    // A 256 KiB tmpfs: the first 1 MiB batch fails with ENOSPC.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir]);
  });
  afterEach(() => {
    execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('rejects with the write\'s error while the source is still being read, and leaves no temp file or open handle', async () => {
    mkdirSync(join(dir, 'store'));
    const store = new FileContentStore(join(dir, 'store'));
    await store.init();
    let returned = false;
    let produced = 0;
    async function* source() {
      try {
        for (let i = 0; i < 32; i++) {
          // The source is slow: a failed batch must not sit unhandled while the store waits for the next chunk.
          await sleep(20);
          produced++;
          yield new Uint8Array(256 << 10).fill(i);
        }
      } finally {
        returned = true;
      }
    }
    await expect(store.write(source())).rejects.toMatchObject({ code: 'ENOSPC' });
    // Stopped at the first chunk after the failure, not at the next batch or the source's end.
    expect(produced).toBeLessThan(8);
    expect(returned).toBe(true);
    expect(readdirSync(store.ingestDir)).toEqual([]);
    expect(readdirSync(store.blobsDir)).toEqual([]);
    expect(openUnder(dir)).toEqual([]);
  });
});
