/**
 * The names and encodings a session speaks in headers and call metadata, as
 * BuildKit's session package does (`session/session.go`, `session/grpc.go`,
 * `session/filesync/filesync.go`, `session/sshforward/ssh.go`).
 */

/** The session's id (BuildKit puts it in `SolveRequest.Session`). */
export const HEADER_SESSION_ID = 'X-Docker-Expose-Session-Uuid';
/** A key stable across the client's sessions, for reusing what a local directory synced before. */
export const HEADER_SESSION_SHARED_KEY = 'X-Docker-Expose-Session-Sharedkey';
/** One value per method the client serves: `/<service>/<method>`. */
export const HEADER_SESSION_METHOD = 'X-Docker-Expose-Session-Grpc-Method';
/** Milliseconds: the daemon's health check interval and timeout (at least 1 s), with one failure fatal. */
export const HEADER_HEALTH_CUSTOM_TIMEOUT = 'X-Buildkit-Session-Health-Custom-Timeout';

/** FileSync metadata: which local directory, and what of it. */
export const KEY_DIR_NAME = 'dir-name';
export const KEY_INCLUDE_PATTERNS = 'include-patterns';
export const KEY_EXCLUDE_PATTERNS = 'exclude-patterns';
export const KEY_FOLLOW_PATHS = 'followpaths';
/** FileSend metadata: which of the client's outputs (the exporter's index in the solve request). */
export const KEY_EXPORTER_ID = 'buildkit-attachable-exporter-id';
/** FileSend metadata prefix: exporter response values given to a file output. */
export const KEY_EXPORTER_META_PREFIX = 'exporter-md-';
/** SSH metadata: the agent id (`default` when absent). */
export const KEY_SSH_ID = 'buildkit.ssh.id';

/** Header or metadata values by lower-cased name. */
export type HeaderMap = Record<string, string[]>;

/** `/<service>/<method>`, as BuildKit's `session.MethodURL`. */
export function methodURL(service: string, method: string): string {
  return `/${service}/${method}`;
}

/**
 * The values of header `name` (any case). Node's HTTP/2 joins repeated
 * header fields into one value with `, ` (grpc-go sends one field per
 * value), so joined values are split again; a value that itself holds `, `
 * cannot be told apart (`encodeOpts` escapes commas for that reason).
 */
export function headerValues(headers: HeaderMap, name: string): string[] {
  const values = headers[name.toLowerCase()] ?? [];
  return values.flatMap((v) => v.split(', '));
}

/** Metadata entries of a call (grpc-js `Metadata.getMap()` style, or raw HTTP/2 headers) as lower-cased lists of strings. */
export function headerMapOf(raw: Record<string, unknown>): HeaderMap {
  const out: HeaderMap = {};
  for (const [key, value] of Object.entries(raw)) {
    if (key.startsWith(':')) continue;
    const list = Array.isArray(value) ? value : [value];
    const strings = list.filter((v) => v !== undefined).map((v) => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v)));
    (out[key.toLowerCase()] ??= []).push(...strings);
  }
  return out;
}

/**
 * FileSync metadata as BuildKit's `encodeOpts`: a key whose values hold a
 * non-ASCII character has all its values URL-query-escaped and gets
 * `<key>-encoded: 1`. A value holding a comma is escaped too (Go's decoder
 * accepts it), so that Node's joining of repeated headers cannot split it.
 */
export function encodeOpts(opts: HeaderMap): HeaderMap {
  const out: HeaderMap = {};
  for (const [key, values] of Object.entries(opts)) {
    const encode = values.some((v) => /[^\x00-\x7f]|,/.test(v));
    out[key] = encode ? values.map(queryEscape) : [...values];
    if (encode) out[`${key}-encoded`] = ['1'];
  }
  return out;
}

/** The inverse of `encodeOpts` (BuildKit's `decodeOpts`), after splitting values Node joined. */
export function decodeOpts(headers: HeaderMap): HeaderMap {
  const out: HeaderMap = {};
  for (const key of Object.keys(headers)) {
    const values = headerValues(headers, key);
    const flag = headers[`${key}-encoded`]?.[0];
    out[key] = flag !== undefined && parseBool(flag) ? values.map(queryUnescape) : values;
  }
  return out;
}

/** Go's `url.QueryEscape`: space as `+`, everything but `A-Za-z0-9-_.~` percent-encoded. */
function queryEscape(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
}

/** Go's `url.QueryUnescape`; a malformed value decodes to '' (Go's decodeOpts ignores the error and keeps the empty result). */
function queryUnescape(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return '';
  }
}

/** Go's `strconv.ParseBool`. */
function parseBool(s: string): boolean {
  return ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s);
}
