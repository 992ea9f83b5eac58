export * from './busybox.js';
export * from './registry-server.js';
