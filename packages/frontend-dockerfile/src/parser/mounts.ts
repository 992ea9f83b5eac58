import { parseGoBool } from './directives.js';
import { LocalParseError } from './errors.js';
import { suggest } from './suggest.js';
import { parseRAMInBytes, parseUint32 } from './units.js';

/**
 * `RUN --mount=type=…,key=value,…` as BuildKit's
 * instructions/commands_runmount.go parses and validates it.
 */

export type MountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
export type CacheSharing = 'shared' | 'private' | 'locked';

export interface RunMount {
  type: MountType;
  /** Stage name, stage index or image the bind/cache source comes from. */
  from?: string;
  /** Path in `from` (bind, cache) or the secret/ssh id's source. */
  source?: string;
  /** Mount point in the container (relative paths are against the workdir). */
  target?: string;
  readOnly: boolean;
  /** tmpfs size in bytes. */
  sizeLimit?: number;
  /** cache id, secret id, ssh id. */
  id?: string;
  sharing?: CacheSharing;
  /** secret/ssh: fail when the client does not provide it. */
  required: boolean;
  /** secret: the environment variable that receives the secret's value. */
  env?: string;
  /** File mode (octal in the Dockerfile) for cache, secret, ssh. */
  mode?: number;
  uid?: number;
  gid?: number;
}

const MOUNT_TYPES: readonly MountType[] = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];
const SHARING: readonly CacheSharing[] = ['shared', 'private', 'locked'];
const ALL_KEYS = ['type', 'from', 'source', 'target', 'readonly', 'id', 'sharing', 'required', 'size', 'mode', 'uid', 'gid', 'src', 'dst', 'destination', 'ro', 'rw', 'readwrite', 'env'];

/** A word expander (variable substitution); identity when values are used as written. */
export type WordExpander = (word: string) => string;

/**
 * Parses one `--mount` value. Without an expander, a mount whose text holds a
 * `$` is returned unvalidated with its raw values (it is validated when the
 * instruction is expanded), except that `from` may never use variables.
 */
export function parseMount(spec: string, expand?: WordExpander): RunMount {
  const fields = parseCsvFields(spec);
  const deferred = expand === undefined && spec.includes('$');
  const ex: WordExpander = expand ?? ((w) => w);
  const m: RunMount = { type: 'bind', readOnly: false, required: false };
  let roAuto = true;

  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    let value = eq < 0 ? '' : field.slice(eq + 1);

    if (eq < 0) {
      switch (key) {
        case 'readonly':
        case 'ro':
          m.readOnly = true;
          roAuto = false;
          continue;
        case 'readwrite':
        case 'rw':
          m.readOnly = false;
          roAuto = false;
          continue;
        case 'required':
          if (deferred || m.type === 'secret' || m.type === 'ssh') {
            m.required = true;
            continue;
          }
          throw new LocalParseError(`unexpected key '${key}' for mount type '${m.type}'`, field);
        default:
          throw new LocalParseError(`invalid field '${field}' must be a key=value pair`, field);
      }
    }

    if (key === 'from') {
      const dollar = value.indexOf('$');
      if (expand === undefined && dollar !== -1 && dollar !== value.length - 1) {
        throw new LocalParseError(`'${key}' doesn't support variable expansion, define alias stage instead`, field);
      }
    }
    if (deferred) {
      assignRaw(m, key, value);
      continue;
    }
    value = ex(value);

    switch (key) {
      case 'type': {
        const v = value.toLowerCase() as MountType;
        if (!MOUNT_TYPES.includes(v)) throw withHint(`unsupported mount type "${value}"`, value, MOUNT_TYPES, field);
        m.type = v;
        break;
      }
      case 'from':
        m.from = value;
        break;
      case 'source':
      case 'src':
        m.source = value;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        m.target = value;
        break;
      case 'readonly':
      case 'ro': {
        const b = parseGoBool(value);
        if (b === undefined) throw new LocalParseError(`invalid value for ${key}: ${value}`, field);
        m.readOnly = b;
        roAuto = false;
        break;
      }
      case 'readwrite':
      case 'rw': {
        const b = parseGoBool(value);
        if (b === undefined) throw new LocalParseError(`invalid value for ${key}: ${value}`, field);
        m.readOnly = !b;
        roAuto = false;
        break;
      }
      case 'required': {
        if (m.type !== 'secret' && m.type !== 'ssh') throw new LocalParseError(`unexpected key '${key}' for mount type '${m.type}'`, field);
        const b = parseGoBool(value);
        if (b === undefined) throw new LocalParseError(`invalid value for ${key}: ${value}`, field);
        m.required = b;
        break;
      }
      case 'size': {
        if (m.type !== 'tmpfs') throw new LocalParseError(`unexpected key '${key}' for mount type '${m.type}'`, field);
        const size = parseRAMInBytes(value);
        if (size === undefined) throw new LocalParseError(`invalid value for ${key}: ${value}`, field);
        m.sizeLimit = size;
        break;
      }
      case 'id':
        m.id = value;
        break;
      case 'sharing': {
        const v = value.toLowerCase() as CacheSharing;
        if (!SHARING.includes(v)) throw withHint(`unsupported sharing value "${value}"`, value, SHARING, field);
        m.sharing = v;
        break;
      }
      case 'mode': {
        const mode = parseUint32(value, 8);
        if (mode === undefined) throw new LocalParseError(`invalid value ${value} for mode`, field);
        m.mode = mode;
        break;
      }
      case 'uid':
      case 'gid': {
        const n = parseUint32(value, 10);
        if (n === undefined) throw new LocalParseError(`invalid value ${value} for ${key}`, field);
        m[key] = n;
        break;
      }
      case 'env':
        m.env = value;
        break;
      default:
        throw withHint(`unexpected key '${key}' in '${field}'`, key, ALL_KEYS, field);
    }
  }

  if (deferred) {
    if (roAuto) m.readOnly = m.type !== 'cache' && m.type !== 'tmpfs';
    return m;
  }

  const fileInfoAllowed = m.type === 'secret' || m.type === 'ssh' || m.type === 'cache';
  if (!fileInfoAllowed) {
    for (const k of ['mode', 'uid', 'gid'] as const) {
      if (m[k] !== undefined) throw new LocalParseError(`${k} not allowed for "${m.type}" type mounts`, `${k}=`);
    }
  }
  if (roAuto) m.readOnly = m.type !== 'cache' && m.type !== 'tmpfs';

  if (m.type === 'secret') {
    if (m.from) throw new LocalParseError('secret mount should not have a from', 'from=');
    if (m.sharing) throw new LocalParseError('secret mount should not define sharing', 'sharing=');
    if (!m.source && !m.target && !m.id) throw new LocalParseError('invalid secret mount. one of source, target required');
    if (m.source && m.id) throw new LocalParseError("both source and id can't be set");
  }
  if (m.sharing && m.type !== 'cache') throw new LocalParseError(`invalid cache sharing set for ${m.type} mount`, 'sharing=');
  return m;
}

function assignRaw(m: RunMount, key: string, value: string): void {
  switch (key) {
    case 'type':
      if (MOUNT_TYPES.includes(value.toLowerCase() as MountType)) m.type = value.toLowerCase() as MountType;
      break;
    case 'from':
      m.from = value;
      break;
    case 'source':
    case 'src':
      m.source = value;
      break;
    case 'target':
    case 'dst':
    case 'destination':
      m.target = value;
      break;
    case 'id':
      m.id = value;
      break;
    case 'env':
      m.env = value;
      break;
    default:
      // Typed values (size, mode, uid, …) are known only after expansion.
      break;
  }
}

function withHint(message: string, value: string, options: readonly string[], token: string): LocalParseError {
  const hint = suggest(value, options, true);
  return new LocalParseError(hint ? `${message} (did you mean ${hint}?)` : message, token);
}

/**
 * One CSV record (encoding/csv rules: `"` quotes a whole field, `""` is a
 * quote inside it, a bare `"` elsewhere is an error).
 */
export function parseCsvFields(line: string): string[] {
  let s = line;
  if (s.endsWith('\r\n')) s = s.slice(0, -2);
  else if (s.endsWith('\n')) s = s.slice(0, -1);
  if (s.length === 0) throw new LocalParseError('failed to parse csv mounts: EOF');
  const fields: string[] = [];
  let pos = 0;
  for (;;) {
    if (s[pos] !== '"') {
      const comma = s.indexOf(',', pos);
      const field = comma < 0 ? s.slice(pos) : s.slice(pos, comma);
      const q = field.indexOf('"');
      if (q >= 0) throw new LocalParseError(`failed to parse csv mounts: parse error on line 1, column ${pos + q + 1}: bare " in non-quoted-field`);
      fields.push(field);
      if (comma < 0) return fields;
      pos = comma + 1;
      continue;
    }
    // quoted field
    pos++;
    let field = '';
    for (;;) {
      const q = s.indexOf('"', pos);
      if (q < 0) throw new LocalParseError(`failed to parse csv mounts: parse error on line 1, column ${pos + 1}: extraneous or missing " in quoted-field`);
      field += s.slice(pos, q);
      pos = q + 1;
      const next = s[pos];
      if (next === '"') {
        field += '"';
        pos++;
        continue;
      }
      if (next === ',') {
        fields.push(field);
        pos++;
        break;
      }
      if (next === undefined) {
        fields.push(field);
        return fields;
      }
      throw new LocalParseError(`failed to parse csv mounts: parse error on line 1, column ${pos}: extraneous or missing " in quoted-field`);
    }
  }
}
