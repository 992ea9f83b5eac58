/**
 * bktd clients as separate processes (`session-client.mjs`): each opens its
 * own session and sends one Solve, reporting what it did as JSON lines —
 * the bytes its FileSync sender sent, by directory and path, and the
 * Solve's outcome.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import type { control } from '@bkt/api';

export const SESSION_CLIENT = fileURLToPath(new URL('session-client.mjs', import.meta.url));

export interface ClientSpec {
  /** The daemon's address, `unix:///…`. */
  address: string;
  ref?: string;
  /** Names the client's directories across sessions (the daemon's sync indexes are kept by it). */
  sharedKey?: string;
  localDirs?: Record<string, string>;
  frontend?: string;
  frontendAttrs?: Record<string, string>;
  /** A file holding a marshalled `pb.Definition`. */
  definitionFile?: string;
  exporters?: { Type: string; Attrs: Record<string, string> }[];
  outputs?: Record<number, { type: 'dir' | 'file'; dest: string }>;
  /** Once one file has sent this many bytes, its sender waits for ever (a client stuck mid-transfer). */
  stallAfterBytes?: number;
}

/** Bytes the client's FileSync sender sent: reads[dir][path]. */
export type Reads = Record<string, Record<string, number>>;

export type ClientEvent =
  | { event: 'session'; id: string }
  | { event: 'stalled'; dir: string; path: string; bytes: number }
  | { event: 'done'; ok: true; response: control.SolveResponse['ExporterResponse']; reads: Reads; ms: number }
  | { event: 'done'; ok: false; code: number; details: string; reads: Reads; ms: number };

export interface ClientProcess {
  pid: number;
  /** Every event so far. */
  events: ClientEvent[];
  /** Resolves with the first event of `kind` (rejects when the process exits first). */
  next<K extends ClientEvent['event']>(kind: K): Promise<Extract<ClientEvent, { event: K }>>;
  /** The process's end: its exit code (or signal) and stderr. */
  exited: Promise<{ code: number | undefined; signal: string | undefined; stderr: string }>;
  /** The `done` event (rejects, with the client's stderr, when it exits without one). */
  done(): Promise<Extract<ClientEvent, { event: 'done' }>>;
  kill(signal: NodeJS.Signals): void;
}

let specs = 0;

/** Starts a client process for `spec` (the spec is written under `work`). */
export async function startClient(work: string, spec: ClientSpec): Promise<ClientProcess> {
  const file = join(work, `client-spec-${process.pid}-${++specs}.json`);
  await writeFile(file, JSON.stringify(spec));
  const proc: ResultPromise<{ reject: false }> = execa('node', [SESSION_CLIENT, file], { reject: false, env: { BKT_DEBUG: '' } });
  const events: ClientEvent[] = [];
  const waiters = new Set<() => void>();
  let buffered = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.startsWith('{')) events.push(JSON.parse(line) as ClientEvent);
    }
    for (const wake of [...waiters]) wake();
  });
  const exited = proc.then((r) => ({ code: r.exitCode, signal: r.signal, stderr: String(r.stderr) }));
  const next = <K extends ClientEvent['event']>(kind: K) =>
    new Promise<Extract<ClientEvent, { event: K }>>((resolve, reject) => {
      const check = () => {
        const found = events.find((e) => e.event === kind);
        if (!found) return false;
        waiters.delete(wake);
        resolve(found as Extract<ClientEvent, { event: K }>);
        return true;
      };
      const wake = () => void check();
      if (check()) return;
      waiters.add(wake);
      void exited.then((r) => {
        if (!check()) reject(new Error(`client ${proc.pid} exited (${r.code ?? r.signal}) before "${kind}":\n${r.stderr}`));
      });
    });
  return {
    pid: proc.pid!,
    events,
    next,
    exited,
    done: () => next('done'),
    kill: (signal) => void proc.kill(signal),
  };
}
