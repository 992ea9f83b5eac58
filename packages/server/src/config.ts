/**
 * `bktd.config.ts`: the daemon's configuration, loaded like `bkt.config.ts`
 * (TypeScript with no build step, or .js/.mjs/.json; the default export).
 * Command-line flags override it. Plugins resolve from the config file's
 * directory; a plugin with the name of a built-in replaces it.
 */
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { BktError, describeValue, loadConfig, type PluginSpec } from '@bkt/core';
import type { RegistrySettings } from '@bkt/registry';
import type { HistoryLimits } from '@bkt/solver';
import type { NetworkOptions } from '@bkt/worker-runc';
import type { GCPolicyConfig } from './gc.js';

export interface DaemonConfig {
  /** Plugins added after the built-in ones (see `defaultPreset`). */
  plugins?: PluginSpec[];
  /** Set false to start from no built-in backends at all. Default true. */
  defaultPreset?: boolean;
  /** The store root (`--root` overrides; relative to the config file). Default `/var/lib/bkt`. */
  root?: string;
  /** Addresses to listen on (`--addr` replaces them): `unix:///path`, `tcp://host:port`. */
  addr?: string[];
  /** The group that may use the unix sockets (`--group` overrides): a name or a gid. */
  group?: string;
  /** TLS for TCP addresses (`--tlscert`, `--tlskey`, `--tlscacert` override); paths relative to the config file. Clients must present a certificate the CA signed. */
  tls?: { cert?: string; key?: string; ca?: string };
  /** Entitlements a build may be granted (`network.host`, `security.insecure`); default none. */
  entitlements?: string[];
  /** Registry settings of the image source and exporters: per-host plain HTTP, insecure TLS, mirrors; concurrency; retries. */
  registry?: RegistrySettings;
  /** The runc worker: its binary, sandbox network, per-step log limit, pids limit; the store's snapshotter; how many ops run at once. */
  worker?: {
    runc?: string;
    network?: NetworkOptions;
    logMaxBytes?: number;
    pidsLimit?: number;
    snapshotter?: 'auto' | 'overlay' | 'copy';
    maxParallelism?: number;
  };
  /** Garbage collection by `gcPolicy` (default true). */
  gc?: boolean;
  /** GC policies, in order (default: buildkitd's defaults for the store's disk). */
  gcPolicy?: GCPolicyConfig[];
  /** How often GC runs besides after builds: a Go duration or seconds (default `10m`). */
  gcInterval?: string | number;
  /** How much build history to keep (default 50 builds, 48 hours). */
  history?: HistoryLimits;
  /**
   * Serve buildx's Controller (`bkt debug build`, `bkt build --invoke`) on
   * the unix sockets (`--controller` sets it; default false; never on
   * tcp://). It grants whoever can reach the unix socket the daemon's
   * access to host paths (build contexts, secret files, output
   * destinations are read and written as the daemon's user), as the
   * docker socket does.
   */
  controller?: boolean;
}

/** Identity function that types a daemon config. */
export function defineDaemonConfig(config: DaemonConfig): DaemonConfig {
  return config;
}

/** The config file names looked for in `/etc/bkt` when no `--config` is given. */
export const DAEMON_CONFIG_NAMES = ['bktd.config.ts', 'bktd.config.mts', 'bktd.config.js', 'bktd.config.mjs', 'bktd.config.json'];

/** The default config file: the first of `DAEMON_CONFIG_NAMES` in `dir` (default `/etc/bkt`), if any. */
export function findDaemonConfig(dir = '/etc/bkt'): string | undefined {
  return DAEMON_CONFIG_NAMES.map((n) => resolve(dir, n)).find((f) => existsSync(f));
}

const KEYS: Record<keyof DaemonConfig, (v: unknown) => boolean> = {
  plugins: Array.isArray,
  defaultPreset: (v) => typeof v === 'boolean',
  root: (v) => typeof v === 'string' && v !== '',
  addr: (v) => Array.isArray(v) && v.every((a) => typeof a === 'string'),
  group: (v) => typeof v === 'string' || typeof v === 'number',
  tls: isObject,
  entitlements: (v) => Array.isArray(v) && v.every((e) => typeof e === 'string'),
  registry: isObject,
  worker: isObject,
  gc: (v) => typeof v === 'boolean',
  gcPolicy: (v) => Array.isArray(v) && v.every(isObject),
  gcInterval: (v) => typeof v === 'string' || (typeof v === 'number' && v > 0),
  history: isObject,
  controller: (v) => typeof v === 'boolean',
};

const WANT: Record<keyof DaemonConfig, string> = {
  plugins: 'an array',
  defaultPreset: 'a boolean',
  root: 'a path',
  addr: 'an array of addresses',
  group: 'a group name or gid',
  tls: 'an object { cert, key, ca }',
  entitlements: 'an array of strings',
  registry: 'an object',
  worker: 'an object',
  gc: 'a boolean',
  gcPolicy: 'an array of policies',
  gcInterval: 'a duration',
  history: 'an object',
  controller: 'a boolean',
};

/** Known entitlements (BuildKit's). */
export const ENTITLEMENTS = ['network.host', 'security.insecure'];

function isObject(v: unknown): boolean {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Loads and checks `file`; relative paths in it (root, tls) are made
 * absolute from its directory. Every problem is a `CONFIG` error naming the
 * file and the key.
 */
export async function loadDaemonConfig(file: string): Promise<{ config: DaemonConfig; dir: string }> {
  const abs = resolve(file);
  const dir = dirname(abs);
  const raw = (await loadConfig(dir, { file: abs })) as Record<string, unknown>;
  for (const [key, value] of Object.entries(raw)) {
    const check = KEYS[key as keyof DaemonConfig];
    if (!check) {
      throw new BktError('CONFIG', `${abs}: unknown key "${key}" (known: ${Object.keys(KEYS).join(', ')})`, { file: abs, attribute: key });
    }
    if (value !== undefined && !check(value)) {
      throw new BktError('CONFIG', `${abs}: "${key}" must be ${WANT[key as keyof DaemonConfig]}, got ${describeValue(value)}`, { file: abs, attribute: key });
    }
  }
  const config = raw as DaemonConfig;
  for (const e of config.entitlements ?? []) {
    if (!ENTITLEMENTS.includes(e)) {
      throw new BktError('CONFIG', `${abs}: entitlements: unknown entitlement "${e}" (known: ${ENTITLEMENTS.join(', ')})`, { file: abs, attribute: 'entitlements' });
    }
  }
  return {
    dir,
    config: {
      ...config,
      ...(config.root ? { root: resolve(dir, config.root) } : {}),
      ...(config.tls
        ? { tls: Object.fromEntries(Object.entries(config.tls).map(([k, v]) => [k, typeof v === 'string' ? resolve(dir, v) : v])) }
        : {}),
    },
  };
}
