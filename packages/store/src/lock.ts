/**
 * The store's process lock, `<root>/lock`: a file holding the pid of the
 * process that has the store open. Taking it is atomic across processes: the
 * pid is written to a private file first, then hard-linked to `lock` (link(2)
 * fails when `lock` exists), so of two processes racing for it exactly one
 * wins and a reader never sees a half-written lock.
 *
 * A lock whose process is dead (a crash) is stale: it is removed under a
 * second exclusive file, `lock.breaking`, so two processes finding the same
 * stale lock cannot both break it and each take the store.
 */
import { closeSync, linkSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BktError } from '@bkt/core';
import { isProcessAlive as isAlive } from '@bkt/fsutil';

/** How long a `lock.breaking` may exist before it is taken as left by a crash. */
const BREAKING_STALE_MS = 10_000;
/** Attempts (about 20 ms apart) before giving up on a lock others keep taking. */
const ATTEMPTS = 100;

/**
 * Takes `<root>/lock` for this process. A live holder (another process) is a
 * `BktError('INVALID_ARGUMENT')` naming it. A lock holding our own pid is
 * stale too: it was left by an earlier process that had our pid (the caller
 * refuses a second open within one process).
 */
export function takeLock(root: string): void {
  const lock = join(root, 'lock');
  const mine = `${lock}.${process.pid}`;
  writeFileSync(mine, String(process.pid));
  try {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      try {
        linkSync(mine, lock);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const seen = readLock(lock);
      if (seen === undefined) continue; // released meanwhile
      const pid = holderPid(seen);
      if (pid !== null && pid !== process.pid && isAlive(pid)) {
        throw new BktError('INVALID_ARGUMENT', `store ${root} is in use by process ${pid} (${lock})`);
      }
      if (!breakStale(lock, seen)) sleep(20);
    }
    throw new BktError('INVALID_ARGUMENT', `store ${root}: could not take ${lock}: other processes keep taking it`);
  } finally {
    rmSync(mine, { force: true });
  }
}

/** The pid in a lock file's text, or null when it holds none. */
function holderPid(text: string): number | null {
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/** A lock file's text; undefined when there is no lock file. */
function readLock(lock: string): string | undefined {
  try {
    return readFileSync(lock, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Removes the stale lock whose text was `seen`, if it is still that lock,
 * holding `lock.breaking` meanwhile. False when another process is breaking it.
 */
function breakStale(lock: string, seen: string): boolean {
  const guard = `${lock}.breaking`;
  try {
    closeSync(openSync(guard, 'wx'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    try {
      if (Date.now() - statSync(guard).mtimeMs > BREAKING_STALE_MS) rmSync(guard, { force: true });
    } catch {
      // gone meanwhile
    }
    return false;
  }
  try {
    // Only a guard holder removes a lock, so an unchanged text is still the stale lock.
    if (readLock(lock) === seen) rmSync(lock, { force: true });
  } finally {
    rmSync(guard, { force: true });
  }
  return true;
}


function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
