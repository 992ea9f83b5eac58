export * from './types.js';
export * from './errors.js';
export * from './hooks.js';
export * from './registry.js';
export * from './plugin.js';
export * from './bkt.js';
export * from './config.js';
