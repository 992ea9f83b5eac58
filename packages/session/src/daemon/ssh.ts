/**
 * The client's SSH agents on the daemon's side: for each agent id, a unix
 * socket in a private temporary directory; every connection to it becomes
 * one `SSH/ForwardAgent` stream (metadata `buildkit.ssh.id`) bridged byte
 * for byte (BuildKit's `sshforward.MountSSHSocket`). `close()` stops the
 * listeners and removes the directory.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SshAgentProvider } from '@bkt/core';
import { SSHService } from '@bkt/api/sshforward';
import { CallError, sessionError, Status } from '../grpc/status.js';
import { KEY_SSH_ID } from '../headers.js';
import type { Session } from './session.js';

export const CHECK_AGENT_METHOD = SSHService.checkAgent.path;
export const FORWARD_AGENT_METHOD = SSHService.forwardAgent.path;

export interface SessionSshAgents extends SshAgentProvider {
  close(): Promise<void>;
}

export function sessionSshAgents(session: Session, opts: { tempDir?: string } = {}): SessionSshAgents {
  const sockets = new Map<string, Promise<string | null>>();
  const servers: Server[] = [];
  const connections = new Set<Socket>();
  let dir: Promise<string> | undefined;
  let closed = false;

  const listen = async (id: string): Promise<string | null> => {
    if (!session.supports(CHECK_AGENT_METHOD) || !session.supports(FORWARD_AGENT_METHOD)) return null;
    try {
      await session.caller.unary(SSHService.checkAgent, { ID: id }, { signal: session.signal });
    } catch (err) {
      // The client has no agent of that id (it answers NotFound, or Unknown as Go's sshprovider does).
      if (err instanceof CallError && [Status.NOT_FOUND, Status.UNKNOWN, Status.UNIMPLEMENTED].includes(err.code as never)) return null;
      throw sessionError(`ssh agent "${id}"`, err);
    }
    if (closed) return null;
    dir ??= mkdtemp(join(opts.tempDir ?? tmpdir(), 'bkt-session-ssh-'));
    const path = join(await dir, `${servers.length}.sock`);
    const server = createServer((socket) => forward(socket, id));
    servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return path;
  };

  const forward = (socket: Socket, id: string) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    const call = session.caller.stream(SSHService.forwardAgent, { metadata: { [KEY_SSH_ID]: id }, signal: session.signal });
    socket.on('data', (data) => {
      socket.pause();
      call.write({ data }).then(
        () => socket.resume(),
        () => socket.destroy(),
      );
    });
    socket.on('end', () => call.end());
    socket.on('error', () => call.cancel('the agent connection failed'));
    void (async () => {
      try {
        for await (const m of call) if (!socket.destroyed) socket.write(m.data);
        socket.end();
      } catch {
        socket.destroy();
      }
    })();
  };

  return {
    socketPath(id) {
      let found = sockets.get(id);
      if (!found) {
        found = listen(id);
        sockets.set(id, found);
        found.catch(() => sockets.delete(id));
      }
      return found;
    },
    async close() {
      closed = true;
      for (const socket of connections) socket.destroy();
      await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      if (dir) await rm(await dir, { recursive: true, force: true });
    },
  };
}
