/**
 * Many clients at once on one bktd (issue 11): 20 client processes, each
 * with its own session, solve Dockerfiles whose first steps are the same
 * and whose last step differs. Every build succeeds; the shared step — a
 * RUN appending to a counter in a cache mount and writing a random stamp —
 * ran once (the counter holds one line, every build got the same stamp);
 * each build's own step is its own; the daemon's peak RSS (VmHWM) stays
 * under 300 MB. BKT_LONG_TESTS=1 runs 40 clients.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { startClient, type ClientProcess } from './clients.js';
import { startBktd, type RunningDaemon } from './lib.js';

const CLIENTS = process.env.BKT_LONG_TESTS === '1' ? 40 : 20;
const RSS_LIMIT_KB = 300 * 1024;

let work: string;
let address: string;
let daemon: RunningDaemon;
let registry: RegistryServer;
let busybox: PushedImage;

beforeAll(async () => {
  work = await tempDir('daemon-concurrency');
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  daemon = await startBktd(['--addr', `unix://${join(work, 'bktd.sock')}`, '--root', join(work, 'root')], { cwd: work });
  address = `unix://${join(work, 'bktd.sock')}`;
});

afterAll(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  await registry?.stop();
  if (work) await removeDir(work);
});

const CACHE = '--mount=type=cache,id=e2e-concurrency,target=/cache';

/** Starts a client building `lines` (a Dockerfile) with its final stage's files exported to `out`. */
async function client(name: string, lines: string[], out: string): Promise<ClientProcess> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), `${lines.join('\n')}\n`);
  return startClient(work, {
    address,
    localDirs: { context: dir, dockerfile: dir },
    frontend: 'dockerfile.v0',
    frontendAttrs: { filename: 'Dockerfile' },
    exporters: [{ Type: 'local', Attrs: { dest: out } }],
    outputs: { 0: { type: 'dir', dest: out } },
  });
}

/** The daemon process's peak resident set (VmHWM), in kB. */
async function peakRssKb(pid: number): Promise<number> {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(m[1]);
}

it(`${CLIENTS} concurrent Solves from separate client processes with shared steps: all succeed, shared steps run once, daemon RSS stays under 300 MB`, async () => {
  const started = Date.now();
  const clients = await Promise.all(
    Array.from({ length: CLIENTS }, (_, i) =>
      client(
        `client-${i}`,
        [
          `FROM ${busybox.reference} AS build`,
          `RUN ${CACHE} echo ran >> /cache/runs && sleep 1 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /stamp`,
          `RUN echo client ${i} > /mine`,
          'FROM scratch',
          'COPY --from=build /stamp /mine /',
        ],
        join(work, `out-${i}`),
      ),
    ),
  );
  const results = await Promise.all(clients.map((c) => c.done()));
  const wall = Date.now() - started;
  const failed = results.filter((r) => !r.ok);
  expect(failed.map((r) => JSON.stringify(r).slice(0, 500))).toEqual([]);

  const stamps = new Set<string>();
  for (let i = 0; i < CLIENTS; i++) {
    expect(await readFile(join(work, `out-${i}`, 'mine'), 'utf8')).toBe(`client ${i}\n`);
    stamps.add(await readFile(join(work, `out-${i}`, 'stamp'), 'utf8'));
  }
  expect(stamps.size).toBe(1);
  expect([...stamps][0]).toMatch(/^[0-9a-f]{32}$/);

  // The cache mount's counter, read by one more build: the shared step ran once.
  const check = await client('check', [`FROM ${busybox.reference}`, `RUN ${CACHE} cat /cache/runs > /runs`, 'FROM scratch', 'COPY --from=0 /runs /'], join(work, 'out-check'));
  const checked = await check.done();
  expect(checked.ok, JSON.stringify(checked)).toBe(true);
  expect(await readFile(join(work, 'out-check', 'runs'), 'utf8')).toBe('ran\n');

  const peak = await peakRssKb(daemon.proc.pid!);
  console.log(`${CLIENTS} concurrent client processes: all done in ${wall} ms; bktd peak RSS ${(peak / 1024).toFixed(0)} MB`);
  expect(peak).toBeLessThan(RSS_LIMIT_KB);
});
