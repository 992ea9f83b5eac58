export * from './types.js';
export * from './cache.js';
export * from './errors.js';
export * from './hooks.js';
export * from './registry.js';
export * from './plugin.js';
export * from './bkt.js';
export * from './config.js';
export * from './target-output.js';
export { CONFIG_FILE_NAMES, describeValue, findConfigFile, loadConfig, type LoadConfigOptions } from './load-config.js';
export { resolvePlugins } from './resolve-plugins.js';
export { composePlugins, definePreset, type BktPreset } from './preset.js';
export { Pacer } from './pacer.js';
export { IMAGE_RESOLVE_MODES, isImageConfigResolver } from './image-config.js';
export {
  failedExecOf,
  isContainerProvider,
  signalNumber,
  withFailedExec,
  SIGNAL_NUMBERS,
  type ContainerNetworkMode,
  type ContainerProcess,
  type ContainerProcessIO,
  type ContainerProcessSpec,
  type ContainerProvider,
  type ContainerSecurityMode,
  type FailedExec,
  type InteractiveContainer,
  type NewContainerRequest,
  type TerminalSize,
} from './container.js';
export { requireRecords } from './records.js';
export {
  emptyClient,
  readClientFile,
  NO_SECRETS,
  NO_SSH_AGENTS,
  type BuildClient,
  type ClientLocalDir,
  type FileContent,
  type FileStat,
  type LocalDirSelection,
  type OutputDir,
  type OutputFile,
  type OutputOptions,
  type RegistryCredentials,
} from './client.js';
export { createBuildScope, SOURCE_DATE_EPOCH_KEY, type BuildScopeOptions, type OwnedBuildScope } from './scope.js';
