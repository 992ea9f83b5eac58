/** Well-known Google types used by the other namespaces: `google.protobuf.{Any,Timestamp}` and `google.rpc.Status`. */
export * as protobuf from './google-protobuf.js';
export * as rpc from './gen/google/rpc/status.js';
