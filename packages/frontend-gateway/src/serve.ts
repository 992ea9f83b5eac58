/**
 * Serving LLBBridge with grpc-js: the service handlers over sessions (one
 * per frontend run, found by the call's metadata on bktd's main endpoint),
 * and a server over one duplex stream — a frontend container's stdio, as
 * BuildKit serves a frontend image over its pipe pair (HTTP/2 over the
 * stream, the frontend the client; `Server.createConnectionInjector`).
 */
import type { Duplex } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import * as gw from '@bkt/api/gateway';
import * as health from '@bkt/api/health';
import { BktError } from '@bkt/core';
import { grpcStatusOf } from './errors.js';
import type { LLBBridgeSession } from './session.js';

/** BuildKit's gateway limit on message sizes (`defaults.DefaultMaxRecvMsgSize`, 16 MiB). */
export const MAX_MESSAGE_BYTES = 16 << 20;

/** Finds the session a call belongs to (by its metadata); throws a `BktError` naming what is missing. */
export type SessionLookup = (metadata: grpc.Metadata) => LLBBridgeSession;

type Unary = 'resolveImageConfig' | 'solve' | 'readFile' | 'readDir' | 'statFile' | 'evaluate' | 'ping' | 'return' | 'inputs' | 'newContainer' | 'releaseContainer' | 'warn';
const UNARY: readonly Unary[] = ['resolveImageConfig', 'solve', 'readFile', 'readDir', 'statFile', 'evaluate', 'ping', 'return', 'inputs', 'newContainer', 'releaseContainer', 'warn'];

/** The LLBBridge service implementation: each call translated by its session, errors as statuses with typed details. */
export function llbBridgeHandlers(lookup: SessionLookup): grpc.UntypedServiceImplementation {
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const name of UNARY) {
    handlers[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      Promise.resolve()
        .then(() => {
          const session = lookup(call.metadata);
          return (session[name] as (req: unknown) => Promise<unknown>).call(session, call.request);
        })
        .then(
          (res) => callback(null, res),
          (err: unknown) => callback(grpcStatusOf(err)),
        );
    };
  }
  handlers.execProcess = (call: grpc.ServerDuplexStream<gw.ExecMessage, gw.ExecMessage>) => {
    let session: LLBBridgeSession;
    try {
      session = lookup(call.metadata);
    } catch (err) {
      call.emit('error', grpcStatusOf(err));
      return;
    }
    let ended = false;
    const rpc = session.execProcess((m) => {
      if (!ended) call.write(m);
    });
    let queue = Promise.resolve();
    call.on('data', (m: gw.ExecMessage) => {
      queue = queue.then(() =>
        rpc.receive(m).catch((err: unknown) => {
          if (ended) return;
          ended = true;
          rpc.close();
          call.emit('error', grpcStatusOf(err));
        }),
      );
    });
    call.on('end', () => {
      void queue.then(() => {
        rpc.close();
        if (!ended) {
          ended = true;
          call.end();
        }
      });
    });
    call.on('cancelled', () => {
      ended = true;
      rpc.close();
    });
  };
  return handlers;
}

/** A Health service answering SERVING (BuildKit serves grpc.health.v1 beside LLBBridge). */
export function healthHandlers(): grpc.UntypedServiceImplementation {
  return {
    check: (_call: unknown, cb: grpc.sendUnaryData<health.HealthCheckResponse>) => cb(null, { status: health.HealthCheckResponse_ServingStatus.SERVING }),
    watch: (call: grpc.ServerWritableStream<unknown, health.HealthCheckResponse>) => {
      call.write({ status: health.HealthCheckResponse_ServingStatus.SERVING });
    },
  };
}

export interface StreamServer {
  /** Stops serving: open calls end, the stream is destroyed. Idempotent. */
  close(): void;
}

/**
 * Serves `session` over `stream` (HTTP/2 server side; the peer is a gRPC
 * client such as BuildKit's `grpcclient` dialling over its stdio).
 */
export function serveOverStream(session: LLBBridgeSession, stream: Duplex): StreamServer {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  });
  server.addService(gw.LLBBridgeService as unknown as grpc.ServiceDefinition, llbBridgeHandlers(() => session));
  server.addService(health.HealthService as unknown as grpc.ServiceDefinition, healthHandlers());
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  injector.injectConnection(stream);
  let closed = false;
  return {
    close() {
      if (closed) return;
      closed = true;
      injector.destroy();
      server.forceShutdown();
      stream.destroy();
    },
  };
}

/** A `SessionLookup` over a map of sessions by build id, read from the `buildkit-controlapi-buildid` metadata key. */
export const BUILD_ID_METADATA_KEY = 'buildkit-controlapi-buildid';

export function lookupByBuildId(sessions: (buildId: string) => LLBBridgeSession | undefined): SessionLookup {
  return (metadata) => {
    const id = metadata.get(BUILD_ID_METADATA_KEY)[0];
    if (typeof id !== 'string' || id === '') {
      throw new BktError('INVALID_ARGUMENT', `LLBBridge call without the ${BUILD_ID_METADATA_KEY} metadata key: it names the build the call belongs to`, {
        attribute: BUILD_ID_METADATA_KEY,
      });
    }
    const session = sessions(id);
    if (!session) throw new BktError('NOT_FOUND', `no running client build "${id}" (${BUILD_ID_METADATA_KEY}): start it with Control.Solve without a frontend first`, { attribute: BUILD_ID_METADATA_KEY });
    return session;
  };
}
