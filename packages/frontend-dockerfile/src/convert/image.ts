import type { Platform } from '@bkt/core';
import { BktError } from '@bkt/core';
import type { ImageConfig, ImageRuntimeConfig } from '@bkt/oci';

/**
 * The image config a Dockerfile build produces: `@bkt/oci`'s `ImageConfig`
 * (moby/docker-image-spec's DockerOCIImage) with its `config` always present.
 * Serialized with Go's field order and `omitempty` rules so the JSON reads
 * like BuildKit's.
 */
export type DockerImage = ImageConfig & { config: ImageRuntimeConfig };

/** The `comment` of history entries BuildKit's Dockerfile frontend writes. */
export const HISTORY_COMMENT = 'buildkit.dockerfile.v0';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The config of `FROM scratch` (BuildKit's emptyImage). */
export function emptyImage(platform: Platform): DockerImage {
  return {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.osVersion ? { 'os.version': platform.osVersion } : {}),
    ...(platform.osFeatures ? { 'os.features': [...platform.osFeatures] } : {}),
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { WorkingDir: '/', ...(platform.os !== 'windows' ? { Env: [`PATH=${DEFAULT_PATH}`] } : {}) },
    rootfs: { type: 'layers', diff_ids: [] },
  };
}

/** Parses an image config JSON (from a registry or a named context). */
export function parseImageConfig(bytes: Uint8Array | string, what: string): DockerImage {
  let raw: unknown;
  try {
    raw = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `image config of ${what} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null) throw new BktError('INVALID_ARGUMENT', `image config of ${what} is not a JSON object`);
  const img = raw as Partial<DockerImage>;
  return {
    ...img,
    architecture: img.architecture ?? '',
    os: img.os ?? '',
    config: { ...(img.config ?? {}) },
    rootfs: { type: img.rootfs?.type ?? 'layers', diff_ids: [...(img.rootfs?.diff_ids ?? [])] },
    ...(img.history ? { history: img.history.map((h) => ({ ...h })) } : {}),
  };
}

/**
 * A copy of an image for a stage built on it, in time independent of the
 * base's history: the config is copied (it is mutated while instructions are
 * dispatched), the history is shared. Histories are never changed in place:
 * `commitToHistory` appends to a chain the copy shares with its base until
 * either appends, and `withHistory` joins them once, for the image a build
 * returns.
 */
export function cloneImage(img: DockerImage): DockerImage {
  const { history, config, ...rest } = img;
  const { Env, ...settings } = config;
  const copy: DockerImage = { ...structuredClone(rest), config: structuredClone(settings) };
  // The list is shared; `setImageEnv` copies it before the copy's first change.
  if (Env !== undefined) copy.config.Env = Env;
  if (history) copy.history = history;
  const chain = appendedHistory.get(img);
  if (chain) appendedHistory.set(copy, chain);
  return copy;
}

/** History entries appended to an image during the conversion, newest first. */
interface HistoryChain {
  readonly entry: NonNullable<DockerImage['history']>[number];
  readonly previous: HistoryChain | undefined;
}

const appendedHistory = new WeakMap<DockerImage, HistoryChain>();

/** `img` with its appended history entries joined into `history` (O(entries), once per returned image). */
export function withHistory(img: DockerImage): DockerImage {
  const chain = appendedHistory.get(img);
  if (!chain) return img;
  const appended: NonNullable<DockerImage['history']> = [];
  for (let c: HistoryChain | undefined = chain; c; c = c.previous) appended.push(c.entry);
  appended.reverse();
  img.history = [...(img.history ?? []), ...appended];
  appendedHistory.delete(img);
  return img;
}

/** The platform an image config declares, if it declares one. */
export function imagePlatform(img: DockerImage): Platform | undefined {
  if (!img.os || !img.architecture) return undefined;
  return {
    os: img.os,
    architecture: img.architecture,
    ...(img.variant ? { variant: img.variant } : {}),
    ...(img['os.version'] ? { osVersion: img['os.version'] } : {}),
    ...(img['os.features'] ? { osFeatures: [...img['os.features']] } : {}),
  };
}

/** The env list each image owns (may change in place), with where each key is. */
const ownedEnv = new WeakMap<DockerImage, { list: string[]; index: Map<string, number> }>();

/**
 * Sets `key=value` in the image's `Env`, replacing an existing key in place
 * (BuildKit's addEnv). O(1): the first call on an image copies the list
 * (which other images may share) and indexes the copy; later calls update
 * that copy. Returns whether the entry is now the list's last (it was added,
 * or replaced the last entry): the order an environment that re-adds the list
 * in order would have.
 */
export function setImageEnv(img: DockerImage, key: string, value: string): boolean {
  let owned = ownedEnv.get(img);
  if (!owned || owned.list !== img.config.Env) {
    const list = [...(img.config.Env ?? [])];
    owned = { list, index: new Map(list.map((e, i) => [envKey(e), i])) };
    ownedEnv.set(img, owned);
    img.config.Env = list;
  }
  const { list, index } = owned;
  const entry = `${key}=${value}`;
  const at = index.get(key);
  if (at === undefined) {
    index.set(key, list.push(entry) - 1);
    return true;
  }
  list[at] = entry;
  return at === list.length - 1;
}

export function envKey(entry: string): string {
  const eq = entry.indexOf('=');
  return eq < 0 ? entry : entry.slice(0, eq);
}

export function envValue(entry: string): string {
  const eq = entry.indexOf('=');
  return eq < 0 ? '' : entry.slice(eq + 1);
}

/** Adds a history entry (BuildKit's commitToHistory; joined into `history` by `withHistory`); `buildkitOp` appends ` # buildkit` as BuildKit does for ops. */
export function commitToHistory(img: DockerImage, msg: string, withLayer: boolean, buildkitOp: boolean, epoch?: Date): void {
  const entry = {
    ...(epoch ? { created: epoch.toISOString().replace('.000Z', 'Z') } : {}),
    created_by: buildkitOp ? `${msg} # buildkit` : msg,
    comment: HISTORY_COMMENT,
    ...(withLayer ? {} : { empty_layer: true }),
  };
  appendedHistory.set(img, { entry, previous: appendedHistory.get(img) });
}

/** The JSON bytes of an image config, fields in Go's order with `omitempty`. */
export function serializeImage(img: DockerImage): Uint8Array {
  const c = img.config;
  const config = omitEmpty({
    User: c.User,
    ExposedPorts: c.ExposedPorts,
    Env: c.Env,
    Entrypoint: c.Entrypoint,
    Cmd: c.Cmd,
    Volumes: c.Volumes,
    WorkingDir: c.WorkingDir,
    Labels: c.Labels,
    StopSignal: c.StopSignal,
    ArgsEscaped: c.ArgsEscaped,
    Healthcheck: c.Healthcheck ? omitEmpty({ ...c.Healthcheck }) : undefined,
    OnBuild: c.OnBuild,
    Shell: c.Shell,
  });
  const out = omitEmpty({
    created: img.created,
    author: img.author,
    architecture: img.architecture,
    os: img.os,
    'os.version': img['os.version'],
    'os.features': img['os.features'],
    variant: img.variant,
    config,
    rootfs: { type: img.rootfs.type, diff_ids: img.rootfs.diff_ids },
    history: img.history?.map((h) => omitEmpty({ ...h })),
  });
  // architecture, os and config are never omitted (no omitempty in Go).
  out.architecture ??= img.architecture;
  out.os ??= img.os;
  out.config ??= {};
  return new TextEncoder().encode(JSON.stringify(orderKeys(out, ['created', 'author', 'architecture', 'os', 'os.version', 'os.features', 'variant', 'config', 'rootfs', 'history'])));
}

function orderKeys(obj: Record<string, unknown>, order: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of order) if (k in obj) out[k] = obj[k];
  return out;
}

/** Drops what Go's `omitempty` drops: undefined, null, false, 0, '', empty arrays and maps. */
function omitEmpty(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined || v === null || v === false || v === 0 || v === '') continue;
    if (Array.isArray(v) && v.length === 0) continue;
    if (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0) continue;
    out[k] = v;
  }
  return out;
}

/** Go's `time.Duration.String()` for nanoseconds (`1m30s`, `500ms`, `0s`). */
export function formatGoDuration(ns: number): string {
  if (ns === 0) return '0s';
  const neg = ns < 0;
  let u = Math.abs(ns);
  let out: string;
  if (u < 1e9) {
    if (u < 1e3) out = `${u}ns`;
    else if (u < 1e6) out = `${trimFraction(u / 1e3)}µs`;
    else out = `${trimFraction(u / 1e6)}ms`;
  } else {
    const h = Math.floor(u / 3.6e12);
    u -= h * 3.6e12;
    const m = Math.floor(u / 6e10);
    u -= m * 6e10;
    const s = trimFraction(u / 1e9);
    out = h > 0 ? `${h}h${m}m${s}s` : m > 0 ? `${m}m${s}s` : `${s}s`;
  }
  return neg ? `-${out}` : out;
}

function trimFraction(v: number): string {
  return v.toFixed(9).replace(/\.?0+$/, '');
}
