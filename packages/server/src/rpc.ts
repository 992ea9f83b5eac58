/**
 * Serving a generated grpc-js service definition with plain async functions,
 * as nice-grpc's service implementations are written: a unary method is
 * `(request, ctx) => Promise<response>`, a server-streaming one an async
 * iterable of responses, and `ctx.signal` aborts when the client cancels or
 * goes away. A bidirectional method gets the raw grpc-js call (the session
 * tunnel reads and writes bytes on it); a client-streaming one the raw call
 * and its callback.
 *
 * Errors become gRPC statuses: a `BktError` by its code (its message as the
 * status details, typed details as BuildKit's), anything else `UNKNOWN`. Handlers never see gRPC types
 * other than the metadata.
 */
import * as grpc from '@grpc/grpc-js';
import { BktError } from '@bkt/core';
import { grpcStatusOf } from '@bkt/frontend-gateway';

export interface CallContext {
  /** Aborted when the client cancels the call, its deadline passes, or its connection drops. */
  signal: AbortSignal;
  /** The request metadata (header names lower-cased). */
  metadata: grpc.Metadata;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type MethodDefinition = grpc.MethodDefinition<any, any>;

/** The implementation of a service whose definition is `D`: unary → promise, server streaming → async iterable, bidi → raw call. */
export type ServiceImplementation<D extends Record<string, MethodDefinition>> = {
  [K in keyof D]: D[K] extends grpc.MethodDefinition<infer Req, infer Res>
    ? D[K]['requestStream'] extends true
      ? D[K]['responseStream'] extends true
        ? (call: grpc.ServerDuplexStream<Req, Res>) => void
        : (call: grpc.ServerReadableStream<Req, Res>, callback: grpc.sendUnaryData<Res>) => void
      : D[K]['responseStream'] extends true
        ? (request: Req, ctx: CallContext) => AsyncIterable<Res>
        : (request: Req, ctx: CallContext) => Promise<Res>
    : never;
};

/**
 * The status an error is sent as: a `BktError` by its code, anything else
 * `UNKNOWN`, with BuildKit's typed details (`errdefs.Vertex` naming a failed
 * op, `errdefs.Solve` of a failed step) in `grpc-status-details-bin`
 * (`grpcStatusOf` of @bkt/frontend-gateway).
 */
export function statusOf(err: unknown): Partial<grpc.StatusObject> {
  return grpcStatusOf(err);
}

/** An AbortSignal aborted when `call` is cancelled (client cancel, deadline, dropped connection). */
function callSignal(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): AbortSignal {
  const controller = new AbortController();
  call.once('cancelled', (reason: string) => controller.abort(new Error(`call cancelled by the client: ${reason}`)));
  return controller.signal;
}

/** A request message that did not decode. */
class MalformedRequest {
  constructor(readonly error: unknown) {}
}

/**
 * Adds `impl` as the service `definition` to `server`. A request message
 * that does not decode is answered `INVALID_ARGUMENT` naming the method
 * (grpc-js would answer `INTERNAL`).
 */
export function addService<D extends Record<string, MethodDefinition>>(server: grpc.Server, definition: D, impl: ServiceImplementation<D>): void {
  const checked: Record<string, MethodDefinition> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const fn = (impl as Record<string, unknown>)[name] as (...args: unknown[]) => unknown;
    if (method.requestStream) {
      checked[name] = method;
      handlers[name] = (call: grpc.ServerDuplexStream<unknown, unknown>, callback?: grpc.sendUnaryData<unknown>) => fn(call, callback);
      continue;
    }
    checked[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return new MalformedRequest(err);
        }
      },
    };
    const invoke = (call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): unknown => {
      if (call.request instanceof MalformedRequest) {
        const why = call.request.error instanceof Error ? call.request.error.message : String(call.request.error);
        throw new BktError('INVALID_ARGUMENT', `malformed ${method.path} request: ${why}`);
      }
      return fn(call.request, { signal: callSignal(call), metadata: call.metadata });
    };
    if (method.responseStream) {
      handlers[name] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        void streamTo(call, (async function* () {
          yield* invoke(call) as AsyncIterable<unknown>;
        })());
      };
    } else {
      handlers[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        Promise.resolve()
          .then(() => invoke(call) as Promise<unknown>)
          .then(
            (response) => callback(null, response),
            (err: unknown) => callback(statusOf(err)),
          );
      };
    }
  }
  server.addService(checked as grpc.ServiceDefinition, handlers);
}

/** Writes every item of `items` to `call` (waiting for the client to read), then ends it with OK, or with the status of the error. */
async function streamTo(call: grpc.ServerWritableStream<unknown, unknown>, items: AsyncIterable<unknown>): Promise<void> {
  try {
    for await (const item of items) {
      if (call.cancelled) return;
      if (!call.write(item)) await new Promise<void>((resolve) => {
        const done = () => {
          call.off('drain', done);
          call.off('cancelled', done);
          resolve();
        };
        call.on('drain', done);
        call.on('cancelled', done);
      });
    }
    if (!call.cancelled) call.end();
  } catch (err) {
    if (!call.cancelled) call.emit('error', statusOf(err));
  }
}
