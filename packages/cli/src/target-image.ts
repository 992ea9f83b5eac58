/**
 * The image config a config target exports (`containerimage.config`
 * metadata): the target's `image` settings over the config of the image its
 * state came from (`image(ref, { metaResolver })`), else over the default
 * config, with the Dockerfile's rules for each field.
 */
import { posix } from 'node:path';
import { BktError, describeValue, type Platform, type TargetHealthcheck, type TargetImageConfig } from '@bkt/core';
import type { ImageConfig, ImageRuntimeConfig } from '@bkt/oci';

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const FIELDS = ['entrypoint', 'cmd', 'env', 'user', 'workdir', 'exposedPorts', 'labels', 'healthcheck', 'stopSignal'] as const;
const HEALTHCHECK_FIELDS = ['test', 'interval', 'timeout', 'startPeriod', 'startInterval', 'retries'] as const;

export interface TargetImageInput {
  /** The config JSON of the image the target's state came from. */
  base?: Uint8Array;
  /** The target's `image` settings. */
  spec?: TargetImageConfig;
  /** The platform of a config made without a base (`--platform`). */
  platform?: Platform;
  /** Names the target in errors: `target "app"`. */
  where: string;
}

/**
 * The config JSON, or undefined when there is nothing to say (no base, no
 * settings, no platform): the exporter's default config then applies.
 */
export function targetImageConfig(input: TargetImageInput): Uint8Array | undefined {
  const { base, spec, platform, where } = input;
  if (spec !== undefined) checkSpec(spec, where);
  if (!base && spec === undefined && !platform) return undefined;
  const config: Partial<ImageConfig> = base ? parseBase(base, where) : defaultConfig(platform);
  // As a Dockerfile's FROM: the base image's creation time is not the new image's.
  delete config.created;
  config.config = applySpec({ ...(config.config ?? {}) }, spec ?? {}, where);
  return new Uint8Array(Buffer.from(JSON.stringify(config)));
}

function defaultConfig(platform: Platform | undefined): Partial<ImageConfig> {
  return {
    ...(platform ? { architecture: platform.architecture, os: platform.os, ...(platform.variant ? { variant: platform.variant } : {}) } : {}),
    config: { Env: [DEFAULT_PATH], WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: [] },
  };
}

function parseBase(bytes: Uint8Array, where: string): Partial<ImageConfig> {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(bytes).toString('utf8'));
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Partial<ImageConfig>;
  } catch {
    // reported below
  }
  throw new BktError('INVALID_ARGUMENT', `${where}: the base image's config is not a JSON object`, { attribute: 'image' });
}

function applySpec(c: ImageRuntimeConfig, spec: TargetImageConfig, where: string): ImageRuntimeConfig {
  if (spec.entrypoint !== undefined) {
    c.Entrypoint = [...spec.entrypoint];
    // As a Dockerfile's ENTRYPOINT: a CMD inherited from the base image no longer applies.
    if (spec.cmd === undefined) delete c.Cmd;
  }
  if (spec.cmd !== undefined) c.Cmd = [...spec.cmd];
  if (spec.env !== undefined) c.Env = mergeEnv(c.Env ?? [], spec.env);
  if (spec.user !== undefined) c.User = spec.user;
  if (spec.workdir !== undefined) c.WorkingDir = posix.resolve(c.WorkingDir || '/', spec.workdir);
  if (spec.exposedPorts !== undefined) {
    c.ExposedPorts = { ...(c.ExposedPorts ?? {}) };
    for (const port of spec.exposedPorts) c.ExposedPorts[exposedPort(port, where)] = {};
  }
  if (spec.labels !== undefined) c.Labels = { ...(c.Labels ?? {}), ...spec.labels };
  if (spec.healthcheck !== undefined) c.Healthcheck = healthcheck(spec.healthcheck, where);
  if (spec.stopSignal !== undefined) c.StopSignal = spec.stopSignal;
  return c;
}

/** `KEY=value` entries with `env` set over them: a key present keeps its place, a new one goes last. */
function mergeEnv(base: string[], env: Record<string, string>): string[] {
  const out = [...base];
  for (const [key, value] of Object.entries(env)) {
    const i = out.findIndex((e) => e === key || e.startsWith(`${key}=`));
    if (i >= 0) out[i] = `${key}=${value}`;
    else out.push(`${key}=${value}`);
  }
  return out;
}

/** `8080` → `8080/tcp`; `53/udp` stays; a range `8000-8010/tcp` is kept as Docker keeps it. */
function exposedPort(port: string | number, where: string): string {
  const text = String(port);
  const m = /^(\d{1,5}(?:-\d{1,5})?)(?:\/(tcp|udp|sctp))?$/i.exec(text);
  if (!m || m[1]!.split('-').some((p) => Number(p) < 1 || Number(p) > 65535)) {
    throw new BktError('CONFIG', `${where}: image.exposedPorts: "${text}" is not a port (e.g. 8080, '8080/tcp', '53/udp')`, { attribute: 'exposedPorts' });
  }
  return `${m[1]}/${(m[2] ?? 'tcp').toLowerCase()}`;
}

function healthcheck(h: TargetHealthcheck, where: string): NonNullable<ImageRuntimeConfig['Healthcheck']> {
  const at = `${where}: image.healthcheck`;
  const [kind, ...rest] = h.test;
  const ok = (kind === 'NONE' && rest.length === 0) || (kind === 'CMD' && rest.length > 0) || (kind === 'CMD-SHELL' && rest.length === 1);
  if (!ok) {
    throw new BktError('CONFIG', `${at}.test must be ['CMD', prog, …args], ['CMD-SHELL', 'command'] or ['NONE'], got ${JSON.stringify(h.test)}`, {
      attribute: 'healthcheck',
    });
  }
  const out: NonNullable<ImageRuntimeConfig['Healthcheck']> = { Test: [...h.test] };
  if (h.interval !== undefined) out.Interval = durationNs(h.interval, `${at}.interval`);
  if (h.timeout !== undefined) out.Timeout = durationNs(h.timeout, `${at}.timeout`);
  if (h.startPeriod !== undefined) out.StartPeriod = durationNs(h.startPeriod, `${at}.startPeriod`);
  if (h.startInterval !== undefined) out.StartInterval = durationNs(h.startInterval, `${at}.startInterval`);
  if (h.retries !== undefined) out.Retries = h.retries;
  return out;
}

const NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds, as Docker stores healthcheck times. */
function durationNs(text: string, where: string): number {
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * NS[m[2]!]!;
    end = re.lastIndex;
  }
  if (text === '' || end !== text.length) {
    throw new BktError('CONFIG', `${where} must be a duration like '30s', '1m30s' or '500ms', got ${JSON.stringify(text)}`, { attribute: 'healthcheck' });
  }
  return Math.round(total);
}

/** Checks a JS or JSON config's `image` as TypeScript checks a typed one: unknown fields and wrong types are errors naming them. */
function checkSpec(spec: unknown, where: string): asserts spec is TargetImageConfig {
  const fail = (field: string, want: string, got: unknown) =>
    new BktError('CONFIG', `${where}: image.${field} must be ${want}, got ${describeValue(got)}`, { attribute: field });
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) throw fail('', 'an object', spec);
  const s = spec as Record<string, unknown>;
  for (const key of Object.keys(s)) {
    if (!(FIELDS as readonly string[]).includes(key)) {
      throw new BktError('CONFIG', `${where}: unknown image setting "${key}" (known: ${FIELDS.join(', ')})`, { attribute: key });
    }
  }
  const strings = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');
  const record = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
  for (const field of ['entrypoint', 'cmd'] as const) if (s[field] !== undefined && !strings(s[field])) throw fail(field, 'a list of strings', s[field]);
  for (const field of ['env', 'labels'] as const) if (s[field] !== undefined && !record(s[field])) throw fail(field, 'an object of strings', s[field]);
  for (const field of ['user', 'workdir', 'stopSignal'] as const) if (s[field] !== undefined && typeof s[field] !== 'string') throw fail(field, 'a string', s[field]);
  if (s.exposedPorts !== undefined && !(Array.isArray(s.exposedPorts) && s.exposedPorts.every((p) => typeof p === 'string' || typeof p === 'number'))) {
    throw fail('exposedPorts', 'a list of ports', s.exposedPorts);
  }
  if (s.healthcheck !== undefined) {
    const h = s.healthcheck as Record<string, unknown>;
    if (h === null || typeof h !== 'object' || Array.isArray(h)) throw fail('healthcheck', 'an object', h);
    for (const key of Object.keys(h)) {
      if (!(HEALTHCHECK_FIELDS as readonly string[]).includes(key)) {
        throw new BktError('CONFIG', `${where}: unknown image.healthcheck setting "${key}" (known: ${HEALTHCHECK_FIELDS.join(', ')})`, { attribute: key });
      }
    }
    if (!strings(h.test)) throw fail('healthcheck.test', 'a list of strings', h.test);
    for (const d of ['interval', 'timeout', 'startPeriod', 'startInterval'] as const) {
      if (h[d] !== undefined && typeof h[d] !== 'string') throw fail(`healthcheck.${d}`, "a duration string like '30s'", h[d]);
    }
    if (h.retries !== undefined && !(typeof h.retries === 'number' && Number.isInteger(h.retries) && h.retries >= 0)) {
      throw fail('healthcheck.retries', 'a whole number', h.retries);
    }
  }
}
