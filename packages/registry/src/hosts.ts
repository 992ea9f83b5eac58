/**
 * Per-registry connection settings, as buildkitd.toml's `[registry."host"]`
 * tables: `http = true` (plain HTTP), `insecure = true` (HTTPS without
 * certificate verification), `mirrors = ["mirror.example.com", …]`. Both
 * `insecure` and `http` (given, or by default for loopback hosts) mean, as in
 * BuildKit, HTTPS without verification that falls back to plain HTTP when the
 * server speaks it.
 */
import { DOCKER_HUB } from '@bkt/oci';

export interface RegistryHostConfig {
  /** Plain HTTP. Defaults to true for loopback hosts (`localhost`, `127.0.0.0/8`, `::1`), as BuildKit. */
  http?: boolean;
  /** HTTPS that does not verify the server certificate. */
  insecure?: boolean;
  /** Hosts (optionally with a path prefix: `host/prefix`) tried in order before this registry for pulls. */
  mirrors?: string[];
}

/** Settings by registry host as written in references (`docker.io`, `127.0.0.1:5000`). */
export type RegistryHostsConfig = Record<string, RegistryHostConfig>;

/** One place to send requests for a registry: its origin or a mirror. */
export interface Endpoint {
  /** The host key its settings come from (`mirror.example.com`). */
  host: string;
  /** `https://registry-1.docker.io/v2` or `http://127.0.0.1:5000/prefix/v2`, no trailing slash. */
  base: string;
  insecure: boolean;
  /** `base` is https, but the server may speak plain HTTP: use http when the TLS handshake says so. */
  httpFallback: boolean;
  mirror: boolean;
}

function isLoopback(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return name === 'localhost' || name === '::1' || /^127\.\d+\.\d+\.\d+$/.test(name);
}

function endpoint(hostAndPath: string, config: RegistryHostsConfig, mirror: boolean): Endpoint {
  const slash = hostAndPath.indexOf('/');
  const host = slash >= 0 ? hostAndPath.slice(0, slash) : hostAndPath;
  const prefix = slash >= 0 ? hostAndPath.slice(slash).replace(/\/+$/, '') : '';
  const settings = config[hostAndPath] ?? config[host] ?? {};
  const http = settings.http ?? isLoopback(host);
  const insecure = settings.insecure ?? false;
  const httpFallback = http && insecure;
  // Docker Hub's API lives on registry-1.docker.io, as in containerd.
  const apiHost = host === DOCKER_HUB ? 'registry-1.docker.io' : host;
  return { host, base: `${http && !httpFallback ? 'http' : 'https'}://${apiHost}${prefix}/v2`, insecure, httpFallback, mirror };
}

/** The endpoints for pulling from `registry`: its mirrors in order, then the registry itself. */
export function pullEndpoints(registry: string, config: RegistryHostsConfig): Endpoint[] {
  const mirrors = config[registry]?.mirrors ?? [];
  return [...mirrors.map((m) => endpoint(m, config, true)), endpoint(registry, config, false)];
}

/** The endpoint for pushing to `registry` (mirrors are never pushed to). */
export function pushEndpoint(registry: string, config: RegistryHostsConfig): Endpoint {
  return endpoint(registry, config, false);
}
