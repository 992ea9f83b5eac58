/** Workspace content initializers (proto package `contentservice`), used by the `imagebuilder` build sources. */
export * from './gen/content-service-api/initializer.js';
