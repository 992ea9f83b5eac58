/**
 * Clients that misbehave on their session (issue 11), against one bktd:
 * a client process killed (SIGKILL) in the middle of sending its context
 * fails its own build — recorded as failed in the history, its staged
 * files gone — while another client's build running at the same time
 * succeeds and the daemon serves on. Fuzzed `Control.Session` calls
 * (bounded, fixed seed): random bytes instead of HTTP/2, random frames
 * after the client's SETTINGS, corrupted `BytesMessage`s, odd headers, and
 * a served session whose client turns to garbage after a build — each
 * call ends promptly with a status (the session is dropped), and the
 * daemon serves sessions and builds on.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { control } from '@bkt/api';
import { createHostClient } from '@bkt/fsutil';
import { openSession, serveSession, tunnelOf } from '@bkt/session';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { startClient } from './clients.js';
import { Control, runcContainers, startBktd, type RunningDaemon } from './lib.js';

let work: string;
let root: string;
let address: string;
let daemon: RunningDaemon;
let rpc: Control;
let registry: RegistryServer;
let busybox: PushedImage;

beforeAll(async () => {
  work = await tempDir('daemon-session-faults');
  root = join(work, 'root');
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  address = `unix://${join(work, 'bktd.sock')}`;
  daemon = await startBktd(['--addr', address, '--root', root], { cwd: work });
  rpc = new Control(address);
});

afterAll(async () => {
  rpc?.close();
  if (daemon) expect(await daemon.stop(), daemon.output()).toBe(0);
  await registry?.stop();
  if (work) await removeDir(work);
});

/** A directory holding `Dockerfile` (and `files`), for a client's context and dockerfile. */
async function project(name: string, dockerfile: string[], files: Record<string, Buffer | string> = {}): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), `${dockerfile.join('\n')}\n`);
  for (const [path, data] of Object.entries(files)) await writeFile(join(dir, path), data);
  return dir;
}

/** What `read` gives once it is empty, or after 10 s (cleanup runs just after a build's history record completes). */
async function settled<T>(read: () => Promise<T[]>): Promise<T[]> {
  let items = await read();
  for (let i = 0; i < 100 && items.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    items = await read();
  }
  return items;
}

/** The history record of `ref` once the build completed (the listener's stream ends with it). */
async function completed(ref: string): Promise<control.BuildHistoryRecord> {
  const events = await rpc.collect(rpc.listenBuildHistory({ Ref: ref }));
  const last = events.at(-1);
  expect(last?.type, JSON.stringify(events)).toBe(control.BuildHistoryEventType.COMPLETE);
  return last!.record!;
}

describe('a session whose client disappears mid-transfer', () => {
  it('fails that build alone: another client builds meanwhile, the daemon lives on', async () => {
    const big = Buffer.alloc(32 << 20, 'x');
    const victimDir = await project('victim', [`FROM ${busybox.reference}`, 'COPY . /ctx'], { 'big.bin': big, 'small.txt': 'small\n' });
    const otherDir = await project('other', [`FROM ${busybox.reference}`, 'COPY small.txt /', 'RUN sleep 3 && cat /small.txt > /copied', 'FROM scratch', 'COPY --from=0 /copied /'], {
      'small.txt': 'the other build\n',
    });
    const df = (dir: string, out: string) => ({
      address,
      localDirs: { context: dir, dockerfile: dir },
      frontend: 'dockerfile.v0',
      frontendAttrs: { filename: 'Dockerfile' },
      exporters: [{ Type: 'local', Attrs: { dest: out } }],
      outputs: { 0: { type: 'dir' as const, dest: out } },
    });
    const other = await startClient(work, { ...df(otherDir, join(work, 'out-other')), ref: 'e2esessionfaultsother001' });
    const victim = await startClient(work, { ...df(victimDir, join(work, 'out-victim')), ref: 'e2esessionfaultsvictim01', stallAfterBytes: 1 << 20 });

    const stalled = await victim.next('stalled');
    expect(stalled).toMatchObject({ dir: 'context', path: 'big.bin' });
    expect(other.events.some((e) => e.event === 'done'), 'the other build is still running').toBe(false);
    victim.kill('SIGKILL');
    expect((await victim.exited).signal).toBe('SIGKILL');

    // The victim's build fails; the other one, running meanwhile, succeeds.
    const failed = await completed('e2esessionfaultsvictim01');
    expect(failed.error?.code, JSON.stringify(failed.error)).toBeGreaterThan(0);
    const done = await other.done();
    expect(done.ok, JSON.stringify(done)).toBe(true);
    expect(await readFile(join(work, 'out-other', 'copied'), 'utf8')).toBe('the other build\n');
    expect((await completed('e2esessionfaultsother001')).error).toBeUndefined();

    // The daemon lives on: it answers, and nothing of the failed transfer is left in its temp space.
    expect((await rpc.info()).buildkitVersion?.package).toBe('@bkt/server');
    expect(daemon.proc.exitCode).toBeNull();
    expect(await settled(() => readdir(join(root, 'tmp')))).toEqual([]);
    expect(await runcContainers(root)).toEqual([]);
  });
});

describe('fuzzed Session calls (fixed seed)', () => {
  let seed = 11;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const int = (n: number) => Math.floor(rand() * n);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  let ids = 0;
  const newId = () => `e2efuzz${process.pid}x${++ids}`;

  /** The client's first frame: an empty SETTINGS (what an HTTP/2 server sends first). */
  const SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
  /** An HTTP/2 frame header: 24-bit length, type, flags, 31-bit stream id. */
  const frameHeader = (length: number, type: number, flags: number, stream: number) => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(stream & 0x7fffffff, 5);
    return h;
  };

  interface Ended {
    code: number;
    ms: number;
  }

  /**
   * Opens Control.Session with `headers`, writes `messages` (raw message
   * bytes when `raw`) — with `afterReply`, the first one, then the others
   * once the daemon answered and went quiet — and waits up to `limitMs` for
   * the call's status.
   */
  function session(headers: Record<string, string | string[]>, messages: Buffer[], opts: { raw?: boolean; limitMs?: number; afterReply?: boolean } = {}): Promise<Ended | 'open'> {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(headers)) for (const value of [v].flat()) md.add(k, value);
    // Raw: the message bytes as they are, whatever they decode to.
    const call = (
      opts.raw ? rpc.raw.makeBidiStreamRequest('/moby.buildkit.v1.Control/Session', (b: Buffer) => b, (b: Buffer) => b, md) : rpc.raw.session(md)
    ) as grpc.ClientDuplexStream<Buffer | control.BytesMessage, unknown>;
    const started = Date.now();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        resolve('open');
        call.cancel();
      }, opts.limitMs ?? 5_000);
      const write = (m: Buffer) => call.write(opts.raw ? m : { data: m });
      let rest = opts.afterReply ? messages.slice(1) : [];
      call.on('data', () => {
        const now = rest;
        rest = [];
        if (now.length > 0) setTimeout(() => now.forEach(write), 200);
      });
      call.on('error', () => {});
      call.on('status', (s: grpc.StatusObject) => {
        clearTimeout(timer);
        resolve({ code: s.code, ms: Date.now() - started });
      });
      for (const m of opts.afterReply ? messages.slice(0, 1) : messages) write(m);
    });
  }

  /** What the calls' outcomes were: status code (or "open") → count. */
  const tally = (outcomes: (Ended | 'open')[]) => {
    const out: Record<string, number> = {};
    for (const o of outcomes) out[o === 'open' ? 'open' : grpc.status[o.code]!] = (out[o === 'open' ? 'open' : grpc.status[o.code]!] ?? 0) + 1;
    return out;
  };

  it('random bytes instead of HTTP/2: each call ends with a status', async () => {
    const outcomes: (Ended | 'open')[] = [];
    for (let i = 0; i < 30; i++) {
      const messages = Array.from({ length: 1 + int(3) }, () => bytes(9 + int(2048)));
      outcomes.push(await session({ 'x-docker-expose-session-uuid': newId() }, messages));
    }
    expect(tally(outcomes).open ?? 0, JSON.stringify(tally(outcomes))).toBe(0);
  });

  it('random frames after the client\'s SETTINGS: each call ends with a status', async () => {
    const outcomes: (Ended | 'open')[] = [];
    for (let i = 0; i < 30; i++) {
      const frames = [SETTINGS];
      for (let f = int(4); f > 0; f--) {
        const payload = bytes(int(64));
        frames.push(Buffer.concat([frameHeader(payload.length, int(10), int(256), int(8)), payload]));
      }
      // Then a frame longer than the 16 KiB HTTP/2 allows unasked: a connection error whatever came before.
      frames.push(Buffer.concat([frameHeader(16_385 + int(1 << 20), int(10), int(256), int(8)), bytes(int(64))]));
      outcomes.push(await session({ 'x-docker-expose-session-uuid': newId() }, frames));
    }
    expect(tally(outcomes).open ?? 0, JSON.stringify(tally(outcomes))).toBe(0);
  });

  it('corrupted BytesMessages, first or after the handshake: each call ends with a status', async () => {
    const outcomes: (Ended | 'open')[] = [];
    for (let i = 0; i < 30; i++) {
      // Field 1 (data) announcing more bytes than follow, or an invalid wire type: never a BytesMessage.
      const broken = i % 2 === 0 ? Buffer.concat([Buffer.from([0x0a, 0x80 + int(127), 0x01 + int(100)]), bytes(int(32))]) : Buffer.concat([Buffer.from([0x0f]), bytes(int(32))]);
      // Every third after the HTTP/2 handshake: the client's SETTINGS, then (once the daemon answered) the broken message.
      const before = i % 3 === 0 ? [Buffer.from(control.BytesMessage.encode({ data: SETTINGS }).finish())] : [];
      outcomes.push(await session({ 'x-docker-expose-session-uuid': newId() }, [...before, broken], { raw: true, afterReply: before.length > 0 }));
    }
    const counts = tally(outcomes);
    expect(counts.open ?? 0, JSON.stringify(counts)).toBe(0);
    expect(counts.OK ?? 0, JSON.stringify(counts)).toBe(0);
  });

  it('odd headers: refused with a status, or a session that ends when its client does', async () => {
    const live = newId();
    const holder = openSession(rpc.raw, createHostClient({}), { id: live });
    try {
      await waitForSession(live);
      const refused: { headers: Record<string, string>; code: grpc.status }[] = [
        { headers: {}, code: grpc.status.INVALID_ARGUMENT },
        { headers: { 'x-docker-expose-session-uuid': '' }, code: grpc.status.INVALID_ARGUMENT },
        { headers: { 'x-docker-expose-session-uuid': live }, code: grpc.status.ALREADY_EXISTS },
      ];
      for (const { headers, code } of refused) expect(await session(headers, []), JSON.stringify(headers)).toMatchObject({ code });
      // Accepted (the daemon cannot tell them from a client that is slow to speak); they end when their client goes.
      const odd: Record<string, string | string[]>[] = [
        { 'x-docker-expose-session-uuid': 'x'.repeat(4096) },
        { 'x-docker-expose-session-uuid': '../../../etc/passwd' },
        { 'x-docker-expose-session-uuid': newId(), 'x-docker-expose-session-sharedkey': 'k'.repeat(4096) },
        { 'x-docker-expose-session-uuid': newId(), 'x-docker-expose-session-grpc-method': Array.from({ length: 500 }, (_, i) => `/%zz${i}/,,`) },
        { 'x-docker-expose-session-uuid': newId(), 'x-buildkit-session-health-custom-timeout': 'abc' },
        { 'x-docker-expose-session-uuid': newId(), 'x-buildkit-session-health-custom-timeout': '-1' },
        { 'x-docker-expose-session-uuid': newId(), 'x-buildkit-session-health-custom-timeout': '99999999999999999999' },
        { 'x-docker-expose-session-uuid': newId(), 'x-docker-expose-session-grpc-method-encoded': '1', 'x-docker-expose-session-grpc-method': '%%%' },
      ];
      for (const headers of odd) {
        const r = await session(headers, [], { limitMs: 300 });
        // Headers over grpc-js's size limit are refused before the daemon sees them (RESOURCE_EXHAUSTED).
        if (r !== 'open') expect([grpc.status.OK, grpc.status.INVALID_ARGUMENT, grpc.status.RESOURCE_EXHAUSTED], JSON.stringify(headers).slice(0, 200)).toContain(r.code);
      }
    } finally {
      holder.close();
    }
  });

  it('a served session whose client sends garbage after a build: the session call ends', async () => {
    const dir = await project('garbage-after', ['FROM scratch', 'COPY hello /'], { hello: 'hello\n' });
    for (let round = 0; round < 3; round++) {
      const id = newId();
      const out = join(work, `out-garbage-${round}`);
      // The client's side as openSession builds it, with the call kept to write garbage on it directly.
      const server = serveSession(createHostClient({ localDirs: { context: dir, dockerfile: dir } }), { id, outputs: { 0: { type: 'dir', dest: out } } });
      const md = new grpc.Metadata();
      for (const [k, vs] of Object.entries(server.metadata())) for (const v of vs) md.add(k, v);
      const tunnelCall = rpc.raw.session(md);
      const ended = new Promise<number>((resolve) => tunnelCall.on('status', (s: grpc.StatusObject) => resolve(s.code)));
      tunnelCall.on('error', () => {});
      server.serve(tunnelOf(tunnelCall as unknown as Parameters<typeof tunnelOf>[0]));
      try {
        const r = await rpc.solve({
          Session: id,
          Frontend: 'dockerfile.v0',
          FrontendAttrs: { filename: 'Dockerfile' },
          Exporters: [{ Type: 'local', Attrs: { dest: out } }],
        });
        expect(r.ExporterResponse).toBeDefined();
        expect(await readFile(join(out, 'hello'), 'utf8')).toBe('hello\n');
        const sentAt = Date.now();
        tunnelCall.write({ data: frameHeader(16_385 + int(1 << 20), int(10), int(256), int(8)) });
        tunnelCall.write({ data: bytes(64) });
        const code = await Promise.race([ended, new Promise<string>((r) => setTimeout(() => r('still open'), 5_000))]);
        expect(typeof code, `round ${round}: the session call after garbage`).toBe('number');
        expect(Date.now() - sentAt).toBeLessThan(5_000);
      } finally {
        tunnelCall.cancel();
        server.close();
      }
    }
  });

  it('after all that, the daemon serves a session build', async () => {
    const dir = await project('after-fuzz', ['FROM scratch', 'COPY file /'], { file: 'still serving\n' });
    const out = join(work, 'out-after-fuzz');
    const done = await (await startClient(work, {
      address,
      localDirs: { context: dir, dockerfile: dir },
      frontend: 'dockerfile.v0',
      frontendAttrs: { filename: 'Dockerfile' },
      exporters: [{ Type: 'local', Attrs: { dest: out } }],
      outputs: { 0: { type: 'dir', dest: out } },
    })).done();
    expect(done.ok, JSON.stringify(done)).toBe(true);
    expect(await readFile(join(out, 'file'), 'utf8')).toBe('still serving\n');
    expect(daemon.proc.exitCode).toBeNull();
    expect(daemon.output()).not.toMatch(/uncaught|unhandled|TypeError|RangeError/i);
  });

  /** Resolves once a Solve naming session `id` gets past waiting for it (it then fails for want of a definition or frontend). */
  async function waitForSession(id: string): Promise<void> {
    // An undecodable Definition: refused once the session is found (a Solve with neither Definition nor Frontend would start a client-side frontend build).
    const r = await rpc.solve({ Session: id, Definition: { def: [new Uint8Array([0xff, 0xff, 0xff])], metadata: {}, Source: undefined } }).catch((e: grpc.ServiceError) => e);
    expect((r as grpc.ServiceError).code, (r as grpc.ServiceError).details).not.toBe(grpc.status.NOT_FOUND);
  }
});
