/**
 * The small services over a session (Auth, Secrets, SSH forwarding,
 * Health) and the daemon's session manager: announced methods, waiting for
 * a session, health checks closing a dead one, one session failing alone.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, Server as GrpcServer, ServerCredentials } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlClient, ControlService } from '@bkt/api/control';
import { BktError, type BuildClient } from '@bkt/core';
import { createHostClient } from '@bkt/fsutil';
import { openSession } from './client/serve.js';
import { sessionBuildClient } from './daemon/build-client.js';
import { SessionManager } from './daemon/manager.js';
import { HEADER_HEALTH_CUSTOM_TIMEOUT } from './headers.js';
import { connect, duplexPair, type Connected, type Transport } from './session.test-util.js';

let work: string;
const open: Connected[] = [];
const servers: Server[] = [];

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-session-services-'));
});
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  await rm(work, { recursive: true, force: true });
});

async function connected(transport: Transport, client: BuildClient, opts: Parameters<typeof connect>[2] = {}) {
  const c = await connect(transport, client, opts);
  open.push(c);
  return c;
}

/** A unix socket server answering each line with `echo:<line>` (stands in for an ssh-agent). */
async function echoAgent(path: string): Promise<void> {
  const server = createServer((socket) => socket.on('data', (d) => socket.write(`echo:${d.toString()}`)));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, () => resolve()));
}

function ask(path: string, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    socket.on('error', reject);
    socket.on('data', (d) => {
      resolve(d.toString());
      socket.end();
    });
    socket.write(message);
  });
}

describe.each<Transport>(['in-memory', 'grpc'])('services over %s', (transport) => {
  it('announces what it serves; supports() is case-insensitive', async () => {
    const c = await connected(transport, createHostClient({}), { id: 'sess-1', sharedKey: 'key-1' });
    expect(c.session.id).toBe('sess-1');
    expect(c.session.sharedKey).toBe('key-1');
    expect(c.session.supports('/moby.filesync.v1.FileSync/diffcopy')).toBe(true);
    expect(c.session.supports('/MOBY.FILESYNC.V1.FILESYNC/DIFFCOPY')).toBe(true);
    expect(c.session.supports('/grpc.health.v1.Health/Check')).toBe(true);
    expect(c.session.supports('/moby.filesync.v1.Auth/Credentials')).toBe(true);
    expect(c.session.supports('/moby.filesync.v1.Auth/FetchToken')).toBe(false); // not served, so not announced
    expect(c.session.supports('/moby.filesync.v1.FileSync/TarStream')).toBe(false);
    expect(c.session.supports('/moby.filesync.v1.FileSend/DiffCopy')).toBe(false); // no outputs
  });

  it('asks the client for registry credentials and secrets', async () => {
    const client = createHostClient({
      credentials: async (host) => (host === 'registry.example' ? { username: 'u', secret: 's3cret' } : null),
      secrets: { get: async (id) => (id === 'token' ? new TextEncoder().encode('abc') : null) },
    });
    const c = await connected(transport, client);
    const daemon = sessionBuildClient(c.session, { localDirNames: [] });
    expect(await daemon.credentials('registry.example')).toEqual({ username: 'u', secret: 's3cret' });
    expect(await daemon.credentials('other.example')).toBeNull();
    expect(Buffer.from((await daemon.secrets.get('token'))!).toString()).toBe('abc');
    expect(await daemon.secrets.get('missing')).toBeNull();
  });

  it('forwards an ssh agent: a socket on the daemon side reaches the client\'s agent; removed at close', async () => {
    const agent = join(work, 'agent.sock');
    await echoAgent(agent);
    const client = createHostClient({ ssh: { socketPath: async (id) => (id === 'default' ? agent : null) } });
    const c = await connected(transport, client);
    const tempDir = join(work, 'daemon-tmp');
    await mkdir(tempDir);
    const daemon = sessionBuildClient(c.session, { localDirNames: [], tempDir });
    const socket = await daemon.ssh.socketPath('default');
    expect(socket).toMatch(new RegExp(`^${tempDir}/bkt-session-ssh-`));
    expect(await daemon.ssh.socketPath('default')).toBe(socket);
    expect(await ask(socket!, 'hello')).toBe('echo:hello');
    expect(await ask(socket!, 'again')).toBe('echo:again');
    expect(await daemon.ssh.socketPath('other')).toBeNull();
    await daemon.close();
    await expect(stat(socket!)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('the manager finds a session by id (a prefix before ":" ignored), and forgets it when its stream ends', async () => {
    const c = await connected(transport, createHostClient({}), { id: 'abc' });
    expect(await c.manager.get('abc')).toBe(c.session);
    expect(await c.manager.get('random-prefix:abc')).toBe(c.session);
    c.closeClient();
    await c.session.closed;
    expect(c.manager.list()).toEqual([]);
    const err = await c.manager.get('abc', { timeoutMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BktError);
    expect(err).toMatchObject({ code: 'NOT_FOUND', message: 'no active session for abc' });
  });
});

describe('the session manager', () => {
  it('waits for a session that arrives later; gives up after its timeout or when cancelled', async () => {
    const manager = new SessionManager();
    const waiting = manager.get('late', { timeoutMs: 5_000 });
    setTimeout(() => void connected('in-memory', createHostClient({}), { id: 'late', manager }), 100);
    expect((await waiting).id).toBe('late');

    const started = Date.now();
    await expect(manager.get('never', { timeoutMs: 200 })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 50);
    await expect(manager.get('never', { signal: abort.signal })).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('refuses a second session with a live id, and one without an id', async () => {
    const manager = new SessionManager();
    await connected('in-memory', createHostClient({}), { id: 'dup', manager });
    await expect(connected('in-memory', createHostClient({}), { id: 'dup', manager })).rejects.toThrow('session dup already exists');
    const [, daemonEnd] = duplexPair();
    expect(() => manager.handleConnection(daemonEnd, {})).toThrow('session: the call has no X-Docker-Expose-Session-Uuid header');
  });

  it('over gRPC, a Session call with the id of a live session ends ALREADY_EXISTS, one without an id INVALID_ARGUMENT', async () => {
    const manager = new SessionManager();
    const dir = await mkdtemp(join(tmpdir(), 'bkt-session-dup-'));
    const address = `unix://${join(dir, 'control.sock')}`;
    const daemon = new GrpcServer();
    daemon.addService({ session: ControlService.session } as never, { session: (call: Parameters<SessionManager['handleSession']>[0]) => void manager.handleSession(call) });
    await new Promise<void>((resolve, reject) => daemon.bindAsync(address, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
    const control = new ControlClient(address, credentials.createInsecure());
    try {
      const first = openSession(control, createHostClient({}), { id: 'taken' });
      await manager.get('taken');
      const statusOf = (md: Metadata) =>
        new Promise<{ code: number; details: string }>((resolve) => {
          const call = control.session(md);
          call.on('error', () => {});
          call.on('status', (st) => resolve(st));
        });
      const dup = new Metadata();
      dup.add('x-docker-expose-session-uuid', 'taken');
      expect(await statusOf(dup)).toMatchObject({ code: 6, details: 'session taken already exists' });
      expect(await statusOf(new Metadata())).toMatchObject({ code: 3, details: 'session: the call has no X-Docker-Expose-Session-Uuid header' });
      expect(manager.list().map((s) => s.id)).toEqual(['taken']);
      first.close();
    } finally {
      control.close();
      daemon.forceShutdown();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('closes a session whose client stops answering health checks (custom timeout header: one failure is fatal)', async () => {
    const manager = new SessionManager();
    // The daemon's end of a connection nobody serves: its HTTP/2 preface goes unanswered.
    const [, daemonEnd] = duplexPair();
    const started = Date.now();
    const session = manager.handleConnection(daemonEnd, {
      'x-docker-expose-session-uuid': ['silent'],
      [HEADER_HEALTH_CUSTOM_TIMEOUT.toLowerCase()]: ['1000'],
    });
    await session.closed;
    const took = Date.now() - started;
    expect(session.closeReason?.message).toMatch(/^session healthcheck failed fatally: .*deadline of 1000 ms exceeded/);
    expect(took).toBeGreaterThanOrEqual(1900);
    expect(took).toBeLessThan(4000);
    expect(manager.list()).toEqual([]);
  });

  it('keeps a session whose client answers health checks', async () => {
    const c = await connected('in-memory', createHostClient({}), { headers: { [HEADER_HEALTH_CUSTOM_TIMEOUT]: '1000' } });
    await new Promise((r) => setTimeout(r, 3_500));
    expect(c.session.isClosed).toBe(false);
  });

  it('a client going away mid-transfer fails its transfer alone: another session on the daemon completes', async () => {
    const manager = new SessionManager();
    const dir = join(work, 'ctx');
    await mkdir(dir);
    const big = randomBytes(64 << 20);
    await writeFile(join(dir, 'big.bin'), big);
    const a = await connected('grpc', createHostClient({ localDirs: { context: dir } }), { id: 'a', manager });
    const b = await connected('grpc', createHostClient({ localDirs: { context: dir } }), { id: 'b', manager });
    const readAll = async (c: Connected, onChunk?: (n: number) => void) => {
      const local = sessionBuildClient(c.session, { localDirNames: ['context'] }).localDir('context')!;
      for await (const _ of local.stat());
      let n = 0;
      for await (const chunk of local.read('big.bin')) {
        n += chunk.length;
        onChunk?.(n);
      }
      return n;
    };
    const failing = readAll(a, (n) => {
      if (n > 4 << 20) a.closeClient();
    });
    const completing = readAll(b);
    const err = await failing.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BktError);
    expect((err as Error).message).toMatch(/^local directory "context": /);
    expect(await completing).toBe(big.length);
    await a.session.closed;
    expect(b.session.isClosed).toBe(false);
    expect(manager.list().map((s) => s.id)).toEqual(['b']);
  });
});
