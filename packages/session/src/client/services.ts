/**
 * The client's small services: `Auth.Credentials` (registry credentials
 * stay on the client; the daemon asks per host), `Secrets.GetSecret`,
 * `SSH.CheckAgent`/`ForwardAgent` (the stream bridged to the agent's
 * socket), and `grpc.health.v1.Health`, which every session client serves.
 */
import { connect } from 'node:net';
import type { sendUnaryData, ServerDuplexStream, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { BktError, type BuildClient } from '@bkt/core';
import type { CredentialsRequest, CredentialsResponse } from '@bkt/api/filesync';
import { HealthCheckResponse_ServingStatus, type HealthCheckRequest, type HealthCheckResponse } from '@bkt/api/health';
import type { GetSecretRequest, GetSecretResponse } from '@bkt/api/secrets';
import type { BytesMessage, CheckAgentRequest, CheckAgentResponse } from '@bkt/api/sshforward';
import { KEY_SSH_ID } from '../headers.js';
import { endWithError, metadataOf, statusOf } from './calls.js';

/** The id of the agent a call asks for when it names none (sshforward's `DefaultID`). */
export const DEFAULT_SSH_ID = 'default';

function unary<Req, Res>(handler: (request: Req) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    handler(call.request).then(
      (response) => callback(null, response),
      (err: unknown) => callback(statusOf(err)),
    );
  };
}

export function authHandlers(client: BuildClient) {
  return {
    credentials: unary<CredentialsRequest, CredentialsResponse>(async (req) => {
      const found = await client.credentials(req.Host);
      // No credentials: an empty answer, as BuildKit's authprovider gives.
      return { Username: found?.username ?? '', Secret: found?.secret ?? '' };
    }),
  };
}

export function secretsHandlers(client: BuildClient) {
  return {
    getSecret: unary<GetSecretRequest, GetSecretResponse>(async (req) => {
      const data = await client.secrets.get(req.ID);
      if (data === null) throw new BktError('NOT_FOUND', `secret ${req.ID} not found`);
      return { data: Buffer.from(data) };
    }),
  };
}

export function sshHandlers(client: BuildClient) {
  const socketOf = async (id: string) => {
    const path = await client.ssh.socketPath(id || DEFAULT_SSH_ID);
    if (path === null) throw new BktError('NOT_FOUND', `unset ssh forward key ${id || DEFAULT_SSH_ID}`);
    return path;
  };
  return {
    checkAgent: unary<CheckAgentRequest, CheckAgentResponse>(async (req) => {
      await socketOf(req.ID);
      return {};
    }),
    forwardAgent: (call: ServerDuplexStream<BytesMessage, BytesMessage>) => {
      const id = metadataOf(call.metadata)[KEY_SSH_ID]?.[0] ?? DEFAULT_SSH_ID;
      socketOf(id).then(
        (path) => bridge(call, path),
        (err: unknown) => endWithError(call, err),
      );
    },
  };
}

/** Copies bytes both ways between the call and a connection to the agent socket until either side ends. */
function bridge(call: ServerDuplexStream<BytesMessage, BytesMessage>, path: string): void {
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

export function healthHandlers() {
  // grpc-go's health server: the server as a whole ("") serves; another service name is unknown.
  const servingStatus = (service: string) => (service === '' ? HealthCheckResponse_ServingStatus.SERVING : undefined);
  return {
    check: unary<HealthCheckRequest, HealthCheckResponse>(async (req) => {
      const status = servingStatus(req.service);
      if (status === undefined) throw new BktError('NOT_FOUND', `unknown service ${req.service}`);
      return { status };
    }),
    watch: (call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
      call.write({ status: servingStatus(call.request.service) ?? HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN });
      // Kept open until the daemon cancels it; the status never changes.
    },
  };
}
