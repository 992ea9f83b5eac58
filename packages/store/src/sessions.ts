/**
 * Sessions: each open `Store` is one session, a row in the metadata DB's
 * `sessions` table naming its process (pid and the process's start time).
 * What a session uses — snapshots, blobs being written, plugin records,
 * running builds — is a lease row naming the session; the files it is
 * writing (ingest files, mount points, temp paths, trash) carry its id in
 * their names. A session is live while its process runs and, in the process
 * that opened it, until it is closed; everything of a dead session (a
 * crash, kill -9) is repaired away by the next open of the store.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { SessionRow } from './metadata.js';

/** Sessions open in this process (a session of this pid not in here was left by a crash simulated in-process, or an earlier process with our pid). */
const openSessions = new Set<string>();

/** A new session of this process; `end()` it when the store closes. */
export function newSession(): SessionRow & { end(): void } {
  const id = `${process.pid}-${randomBytes(4).toString('hex')}`;
  openSessions.add(id);
  return { id, pid: process.pid, started: processStart(process.pid) ?? '', end: () => openSessions.delete(id) };
}

/** Session ids look like `<pid>-<8 hex>`. */
export const SESSION_ID = /^\d+-[0-9a-f]{8}$/;

/**
 * A liveness test over the sessions recorded now; cheap to call per lease.
 * Ids of sessions not recorded are dead (their process never registered, or was repaired away).
 */
export function liveness(sessions: SessionRow[]): (session: string) => boolean {
  const live = new Set<string>();
  for (const s of sessions) if (isLive(s)) live.add(s.id);
  for (const id of openSessions) live.add(id);
  return (session) => live.has(session);
}

function isLive(s: SessionRow): boolean {
  if (openSessions.has(s.id)) return true;
  if (s.pid === process.pid) return false;
  const started = processStart(s.pid);
  return started !== undefined && started === s.started;
}

/** The start time of a process (field 22 of `/proc/<pid>/stat`, clock ticks since boot); undefined when it does not exist. */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command (field 2) may contain spaces and parentheses: fields after it start past the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}
