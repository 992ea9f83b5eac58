/**
 * The client's small services: `Auth.Credentials` (registry credentials
 * stay on the client; the daemon asks per host), `Secrets.GetSecret`,
 * `SSH.CheckAgent`/`ForwardAgent` (the stream bridged to the agent's
 * socket), and `grpc.health.v1.Health`, which every session client serves.
 */
import { connect } from 'node:net';
import { BktError, type BuildClient } from '@bkt/core';
import { AuthService } from '@bkt/api/filesync';
import { HealthCheckResponse_ServingStatus, HealthService } from '@bkt/api/health';
import { SecretsService } from '@bkt/api/secrets';
import { SSHService, type BytesMessage } from '@bkt/api/sshforward';
import type { GrpcServer, ServerCall } from '../grpc/server.js';
import { KEY_SSH_ID } from '../headers.js';
import { endWithError } from './calls.js';

/** The id of the agent a call asks for when it names none (sshforward's `DefaultID`). */
export const DEFAULT_SSH_ID = 'default';

/** Serves `Auth.Credentials`: no credentials is an empty answer, as BuildKit's authprovider gives. */
export function serveAuth(server: GrpcServer, client: BuildClient): void {
  server.unary(AuthService.credentials, async (req) => {
    const found = await client.credentials(req.Host);
    return { Username: found?.username ?? '', Secret: found?.secret ?? '' };
  });
}

export function serveSecrets(server: GrpcServer, client: BuildClient): void {
  server.unary(SecretsService.getSecret, async (req) => {
    const data = await client.secrets.get(req.ID);
    if (data === null) throw new BktError('NOT_FOUND', `secret ${req.ID} not found`);
    return { data: Buffer.from(data) };
  });
}

export function serveSsh(server: GrpcServer, client: BuildClient): void {
  const socketOf = async (id: string) => {
    const path = await client.ssh.socketPath(id || DEFAULT_SSH_ID);
    if (path === null) throw new BktError('NOT_FOUND', `unset ssh forward key ${id || DEFAULT_SSH_ID}`);
    return path;
  };
  server.unary(SSHService.checkAgent, async (req) => {
    await socketOf(req.ID);
    return {};
  });
  server.bidi(SSHService.forwardAgent, (call) => {
    const id = call.metadata[KEY_SSH_ID]?.[0] ?? DEFAULT_SSH_ID;
    socketOf(id).then(
      (path) => bridge(call, path),
      (err: unknown) => endWithError(call, err),
    );
  });
}

/** Copies bytes both ways between the call and a connection to the agent socket until either side ends. */
function bridge(call: ServerCall<BytesMessage, BytesMessage>, path: string): void {
  const socket = connect(path);
  socket.on('data', (data) => {
    if (!call.write({ data })) socket.pause();
  });
  call.on('drain', () => socket.resume());
  socket.on('end', () => {
    if (!call.cancelled && !call.writableEnded) call.end();
  });
  socket.on('error', (err) => endWithError(call, new BktError('INTERNAL', `ssh agent ${path}: ${err.message}`)));
  call.on('data', (m: BytesMessage) => {
    if (!socket.write(m.data)) call.pause();
  });
  socket.on('drain', () => call.resume());
  call.on('end', () => socket.end());
  call.on('cancelled', () => socket.destroy());
}

export function serveHealth(server: GrpcServer): void {
  // grpc-go's health server: the server as a whole ("") serves; another service name is unknown.
  const servingStatus = (service: string) => (service === '' ? HealthCheckResponse_ServingStatus.SERVING : undefined);
  server.unary(HealthService.check, async (req) => {
    const status = servingStatus(req.service);
    if (status === undefined) throw new BktError('NOT_FOUND', `unknown service ${req.service}`);
    return { status };
  });
  server.serverStream(HealthService.watch, (req, call) => {
    call.write({ status: servingStatus(req.service) ?? HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN });
    // Kept open until the daemon cancels it; the status never changes.
  });
}
