/** The receive windows of a session's connection, seen by a node:http2 client of a real grpc-js server. */
import { connect, type ClientHttp2Session, type Settings } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import * as control from '@bkt/api/control';
import { SESSION_CONNECTION_WINDOW, SESSION_STREAM_WINDOW, widenReceiveWindows } from './receive-window.js';
import { daemonSessions } from './sessions.js';

const servers: grpc.Server[] = [];
const clients: ClientHttp2Session[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
  for (const s of servers.splice(0)) s.forceShutdown();
});

/** A grpc-js server with Control.Session handled by `handler`; its address. */
async function serve(handler: (call: grpc.ServerDuplexStream<unknown, unknown>) => void): Promise<string> {
  const server = new grpc.Server();
  servers.push(server);
  server.addService({ session: control.ControlService.session } as unknown as grpc.ServiceDefinition, { session: handler });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return `http://127.0.0.1:${port}`;
}

/** A client connection recording every SETTINGS frame the server sends. */
function client(url: string): { h2: ClientHttp2Session; settings: Settings[] } {
  const h2 = connect(url);
  clients.push(h2);
  const settings: Settings[] = [];
  h2.on('remoteSettings', (s) => settings.push(s));
  h2.on('error', () => {});
  return { h2, settings };
}

/** Opens Control.Session with `headers`. */
function openSession(h2: ClientHttp2Session, headers: Record<string, string> = {}) {
  const stream = h2.request({ ':method': 'POST', ':path': control.ControlService.session.path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
  stream.on('error', () => {});
  return stream;
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (const deadline = Date.now() + 5000; !check(); ) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('widenReceiveWindows', () => {
  it("raises the call's connection to the session tunnel's windows: SETTINGS (4 MiB a stream) and the connection's WINDOW_UPDATE (16 MiB), once", async () => {
    const found: boolean[] = [];
    const url = await serve((call) => found.push(widenReceiveWindows(call)));
    const { h2, settings } = client(url);
    openSession(h2);
    await until(() => settings.length >= 2, 'the second SETTINGS');
    expect(found).toEqual([true]);
    expect(settings[0]!.initialWindowSize).toBe(65535);
    expect(settings.at(-1)!.initialWindowSize).toBe(SESSION_STREAM_WINDOW);
    await until(() => (h2.state.remoteWindowSize ?? 0) > 65535, 'the connection window');
    expect(h2.state.remoteWindowSize).toBe(SESSION_CONNECTION_WINDOW);

    // A second call on the same connection changes nothing more.
    openSession(h2);
    await until(() => found.length === 2, 'the second call');
    await new Promise((r) => setTimeout(r, 50));
    expect(found).toEqual([true, true]);
    expect(settings).toHaveLength(2);
  });

  it('lets a client send a stream 1 MiB before the handler reads anything (the default 64 KiB would stop it)', async () => {
    let widen = true;
    const url = await serve((call) => {
      if (widen) widenReceiveWindows(call);
      call.pause();
    });
    const sent = async () => {
      const { h2, settings } = client(url);
      const stream = openSession(h2);
      await until(() => settings.length >= (widen ? 2 : 1), 'the settings');
      const chunk = Buffer.alloc(16 << 10);
      for (let i = 0; i < 64; i++) stream.write(chunk);
      // What HTTP/2 could send without a window update (the handler reads nothing): the rest stays buffered here.
      await new Promise((r) => setTimeout(r, 100));
      return 64 * chunk.length - stream.writableLength;
    };
    expect(await sent()).toBeGreaterThanOrEqual(1 << 20);
    widen = false;
    expect(await sent()).toBeLessThan(1 << 20);
  });

  it('leaves an object that holds no HTTP/2 session alone', () => {
    expect(widenReceiveWindows({})).toBe(false);
    expect(widenReceiveWindows({ call: { nextCall: { stream: {} } } })).toBe(false);
  });
});

describe('daemonSessions', () => {
  it("widens a Control.Session call's connection, and not one refused for want of a session id", async () => {
    const sessions = daemonSessions();
    try {
      const url = await serve((call) => sessions.session(call as unknown as grpc.ServerDuplexStream<control.BytesMessage, control.BytesMessage>));
      const refused = client(url);
      openSession(refused.h2);
      await until(() => refused.settings.length >= 1, 'the first SETTINGS');
      await new Promise((r) => setTimeout(r, 100));
      expect(refused.settings.map((s) => s.initialWindowSize)).toEqual([65535]);

      const accepted = client(url);
      openSession(accepted.h2, { 'x-docker-expose-session-uuid': 'widen-test' });
      await until(() => accepted.settings.length >= 2, 'the second SETTINGS');
      expect(accepted.settings.at(-1)!.initialWindowSize).toBe(SESSION_STREAM_WINDOW);
    } finally {
      sessions.closeAll();
    }
  });
});
