export * from './busybox.js';
export * from './registry-server.js';
export * from './grpc-stream.js';
