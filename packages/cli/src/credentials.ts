/**
 * The registry credentials a build offers, as docker's CLI finds them
 * ($DOCKER_CONFIG/config.json or ~/.docker/config.json, credential helpers):
 * `@bkt/registry` is imported when a pull or push first asks, so a build that
 * asks none never loads it.
 */
import type { RegistryCredentials } from '@bkt/core';

export function dockerCredentials(): (host: string) => Promise<RegistryCredentials | null> {
  let provider: Promise<(host: string) => Promise<RegistryCredentials | null>> | undefined;
  return async (host) => {
    provider ??= import('@bkt/registry').then((r) => r.forBuildClient(r.dockerConfigCredentials()));
    return (await provider)(host);
  };
}
