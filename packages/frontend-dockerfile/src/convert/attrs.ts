import type { Attrs, Platform } from '@bkt/core';
import { BktError } from '@bkt/core';
import type { UlimitName } from '@bkt/llb';
import { parseCsvFields } from '../parser/mounts.js';
import { platformOrUndefined } from '../parser/platforms.js';
import { ALLOW_PLATFORM_MISMATCH_ARG, parseAllowPlatformMismatch } from './base-platform.js';

/**
 * The frontend attributes of `dockerfile.v0`, named and parsed as BuildKit's
 * dockerui package does (frontend/dockerui/config.go, attr.go).
 */
export interface FrontendOptions {
  /** `filename`: the Dockerfile's path in the dockerfile dir (default `Dockerfile`). */
  filename: string;
  /** `contextkey`: the local dir of the build context (default `context`). */
  contextKey: string;
  /** `dockerfilekey`: the local dir holding the Dockerfile (default `dockerfile`). */
  dockerfileKey: string;
  /** `target`. */
  target?: string;
  /** `build-arg:K`. */
  buildArgs: Record<string, string>;
  /** `label:K`: labels added to the image config. */
  labels: Record<string, string>;
  /** `platform` (one platform); undefined: the host's. */
  targetPlatform?: Platform;
  /** `context:NAME`: named contexts, by name (may carry a `::os/arch` suffix). */
  contexts: Record<string, string>;
  /** `input-metadata:INPUT`: JSON metadata (`containerimage.config`) of the frontend input named by a `context:NAME=input:INPUT`. */
  inputMetadata: Record<string, string>;
  /** `no-cache`: undefined = none; [] = every stage; else these stage names. */
  noCache?: string[];
  /** `add-hosts`: `host=ip,…`. */
  extraHosts: { host: string; ip: string }[];
  /** `shm-size` in bytes. */
  shmSize: number;
  /** `ulimit`: `nofile=1024:2048,…`. */
  ulimits: { name: UlimitName; soft: number; hard: number }[];
  /** `force-network-mode`: `sandbox` (default), `none`, `host`. */
  networkMode: 'sandbox' | 'none' | 'host';
  /** `image-resolve-mode`: `default`, `pull`, `local`. */
  resolveMode: 'default' | 'pull' | 'local';
  /** `hostname` or `build-arg:BUILDKIT_SANDBOX_HOSTNAME`. */
  hostname?: string;
  /** `cgroup-parent`. */
  cgroupParent?: string;
  /** `build-arg:BUILDKIT_CACHE_MOUNT_NS`: prefix of cache mount ids. */
  cacheNamespace: string;
  /** `build-arg:BUILDKIT_DOCKERFILE_CHECK`: replaces the `# check=` directive. */
  check?: string;
  /** `build-arg:BKT_ALLOW_PLATFORM_MISMATCH`: a base image of another platform is a warning, not an error (see base-platform.ts). */
  allowPlatformMismatch?: boolean;
}

const ULIMIT_NAMES: readonly UlimitName[] = [
  'core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice',
  'nofile', 'nproc', 'rss', 'rtprio', 'rttime', 'sigpending', 'stack',
];

/** Attributes read here; others (exporter, cache, attestation options) are ignored, as BuildKit does. */
export function parseFrontendAttrs(attrs: Attrs): FrontendOptions {
  const prefixed = (prefix: string): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(attrs)) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = v;
    return out;
  };
  const opts: FrontendOptions = {
    filename: attrs.filename || 'Dockerfile',
    contextKey: attrs.contextkey || 'context',
    dockerfileKey: attrs.dockerfilekey || 'dockerfile',
    buildArgs: prefixed('build-arg:'),
    labels: prefixed('label:'),
    contexts: prefixed('context:'),
    inputMetadata: prefixed('input-metadata:'),
    extraHosts: parseExtraHosts(attrs['add-hosts'] ?? ''),
    shmSize: parseShmSize(attrs['shm-size'] ?? ''),
    ulimits: parseUlimits(attrs.ulimit ?? ''),
    networkMode: parseNetworkMode(attrs['force-network-mode'] ?? ''),
    resolveMode: parseResolveMode(attrs['image-resolve-mode'] ?? ''),
    cacheNamespace: attrs['build-arg:BUILDKIT_CACHE_MOUNT_NS'] ?? '',
  };
  if (attrs.target) opts.target = attrs.target;
  if (attrs.platform) {
    const list = attrs.platform.split(',').map((p) => p.trim()).filter(Boolean);
    if (list.length > 1) {
      throw new BktError('UNIMPLEMENTED', `platform: several platforms in one build are not supported yet (got ${attrs.platform}); build each platform separately`, { attribute: 'platform' });
    }
    const p = platformOrUndefined(list[0] ?? '');
    if (!p) throw new BktError('INVALID_ARGUMENT', `platform: failed to parse target platform ${attrs.platform}`, { attribute: 'platform' });
    opts.targetPlatform = p;
  }
  if ('no-cache' in attrs) opts.noCache = attrs['no-cache'] === '' ? [] : attrs['no-cache'].split(',');
  const hostname = attrs['build-arg:BUILDKIT_SANDBOX_HOSTNAME'] || attrs.hostname;
  if (hostname) opts.hostname = hostname;
  if (attrs['cgroup-parent']) opts.cgroupParent = attrs['cgroup-parent'];
  if ('build-arg:BUILDKIT_DOCKERFILE_CHECK' in attrs) opts.check = attrs['build-arg:BUILDKIT_DOCKERFILE_CHECK'];
  if (parseAllowPlatformMismatch(attrs[`build-arg:${ALLOW_PLATFORM_MISMATCH_ARG}`])) opts.allowPlatformMismatch = true;
  return opts;
}

function csv(value: string, attribute: string): string[] {
  try {
    return parseCsvFields(value);
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `${attribute}: ${(err as Error).message}`, { attribute });
  }
}

function parseExtraHosts(value: string): { host: string; ip: string }[] {
  if (value === '') return [];
  return csv(value, 'add-hosts').map((field) => {
    const eq = field.indexOf('=');
    if (eq < 0) throw new BktError('INVALID_ARGUMENT', `add-hosts: invalid key-value pair ${field}`, { attribute: 'add-hosts' });
    const host = field.slice(0, eq).toLowerCase();
    const ip = field.slice(eq + 1).toLowerCase();
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(ip) && !/^[0-9a-f:.]+$/.test(ip)) {
      throw new BktError('INVALID_ARGUMENT', `add-hosts: failed to parse IP ${ip}`, { attribute: 'add-hosts' });
    }
    return { host, ip };
  });
}

function parseShmSize(value: string): number {
  if (value === '') return 0;
  if (!/^\d+$/.test(value)) throw new BktError('INVALID_ARGUMENT', `shm-size: failed to parse shm size ${JSON.stringify(value)}`, { attribute: 'shm-size' });
  return Number(value);
}

/** docker/go-units ParseUlimit: `name=soft[:hard]`. */
function parseUlimits(value: string): { name: UlimitName; soft: number; hard: number }[] {
  if (value === '') return [];
  return csv(value, 'ulimit').map((field) => {
    const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(field);
    if (!m) throw new BktError('INVALID_ARGUMENT', `ulimit: invalid ulimit argument: ${field}`, { attribute: 'ulimit' });
    const name = m[1] as UlimitName;
    if (!ULIMIT_NAMES.includes(name)) throw new BktError('INVALID_ARGUMENT', `ulimit: invalid ulimit type: ${m[1]}`, { attribute: 'ulimit' });
    const soft = Number(m[2]);
    const hard = m[3] === undefined ? soft : Number(m[3]);
    if (soft > hard) throw new BktError('INVALID_ARGUMENT', `ulimit: ulimit soft limit must be less than or equal to hard limit: ${soft} > ${hard}`, { attribute: 'ulimit' });
    return { name, soft, hard };
  });
}

function parseNetworkMode(value: string): FrontendOptions['networkMode'] {
  if (value === '' || value === 'sandbox') return 'sandbox';
  if (value === 'none' || value === 'host') return value;
  throw new BktError('INVALID_ARGUMENT', `force-network-mode: invalid netmode ${value}`, { attribute: 'force-network-mode' });
}

function parseResolveMode(value: string): FrontendOptions['resolveMode'] {
  switch (value) {
    case '':
    case 'default':
      return 'default';
    case 'pull':
      return 'pull';
    case 'local':
      return 'local';
    default:
      throw new BktError('INVALID_ARGUMENT', `image-resolve-mode: invalid image-resolve-mode: ${value}`, { attribute: 'image-resolve-mode' });
  }
}
