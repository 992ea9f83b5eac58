/**
 * The gRPC client constructors of the generated services, made on first use.
 *
 * ts-proto writes `export const XClient = makeGenericClientConstructor(XService, name)`
 * beside the messages, which would load `@grpc/grpc-js` with every namespace
 * that has a service. scripts/generate.mjs makes the generated code call this
 * function instead. What it returns behaves as grpc-js's constructor itself
 * (`new`, a subclass's `super`, `instanceof`, the static `service` and
 * `serviceName`): that constructor is made — and grpc-js loaded, synchronously,
 * from where a static import would load it — the first time it is used. So
 * importing a namespace (`@bkt/api/control`, `@bkt/api/filesync`, …) loads
 * only messages and service definitions; constructing a client loads grpc-js.
 */
import { createRequire } from 'node:module';
import type * as grpc from '@grpc/grpc-js';

let grpcJs: typeof grpc | undefined;

/**
 * `@grpc/grpc-js`, loaded once (an optional peer: only a package that makes
 * clients needs it). A CommonJS bundle of this module (a frontend bundled
 * with esbuild) has no `import.meta.url`; its literal `require` is what lets
 * the bundler include grpc-js.
 */
function loadGrpcJs(): typeof grpc {
  return (grpcJs ??= (import.meta.url ? createRequire(import.meta.url)('@grpc/grpc-js') : require('@grpc/grpc-js')) as typeof grpc);
}

/** grpc-js's `makeGenericClientConstructor(methods, serviceName)`, called when the constructor is first used. */
export function makeGenericClientConstructor(methods: grpc.ServiceDefinition, serviceName: string): grpc.ServiceClientConstructor {
  let made: grpc.ServiceClientConstructor | undefined;
  const real = () => (made ??= loadGrpcJs().makeGenericClientConstructor(methods, serviceName));
  // The target only gives the proxy [[Call]] and [[Construct]]; every operation goes to the real constructor.
  const lazy: grpc.ServiceClientConstructor = new Proxy(function GrpcClient() {} as unknown as grpc.ServiceClientConstructor, {
    construct: (_target, args, newTarget) => Reflect.construct(real(), args, newTarget === lazy ? real() : newTarget) as object,
    apply: (_target, thisArg, args) => Reflect.apply(real(), thisArg, args) as unknown,
    get: (_target, key) => Reflect.get(real(), key) as unknown,
    has: (_target, key) => Reflect.has(real(), key),
  });
  return lazy;
}
