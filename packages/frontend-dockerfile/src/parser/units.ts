/**
 * Value syntaxes Dockerfile flags borrow from Go: durations (`1m30s`), sizes
 * (`64m`, `1.5GiB`) and unsigned integers in a base. Each returns undefined
 * for a malformed value; callers word the error.
 */

const DURATION_UNITS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  'µs': 1e3,
  'μs': 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/** Go's time.ParseDuration, in nanoseconds: `300ms`, `-1.5h`, `2h45m`, `0`. */
export function parseDuration(s: string): number | undefined {
  let rest = s;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    if (rest[0] === '-') sign = -1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') return undefined;
  let total = 0;
  while (rest !== '') {
    const m = /^([0-9]*)(?:\.([0-9]*))?/.exec(rest);
    if (!m || (m[1] === '' && (m[2] === undefined || m[2] === ''))) return undefined;
    rest = rest.slice(m[0].length);
    const u = /^[^0-9.]+/.exec(rest);
    if (!u) return undefined; // a number without a unit
    const unit = DURATION_UNITS[u[0]];
    if (unit === undefined) return undefined;
    rest = rest.slice(u[0].length);
    const whole = m[1] === '' ? 0 : Number(m[1]);
    const frac = m[2] ? Number(`0.${m[2]}`) : 0;
    total += (whole + frac) * unit;
  }
  const ns = Math.round(total);
  if (!Number.isFinite(ns) || ns > 2 ** 63 - 1) return undefined;
  return sign * ns;
}

const BINARY: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/** go-units RAMInBytes: `1024`, `64m`, `1.5g`, `2GiB`, `10 MB` (binary multiples). */
export function parseRAMInBytes(s: string): number | undefined {
  let sep = -1;
  for (let i = s.length - 1; i >= 0; i--) {
    if ('0123456789. '.includes(s[i])) {
      sep = i;
      break;
    }
  }
  if (sep === -1) return undefined;
  const num = s[sep] === ' ' ? s.slice(0, sep) : s.slice(0, sep + 1);
  let sfx = s.slice(sep + 1);
  if (!/^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/.test(num)) return undefined;
  let size = Number(num);
  if (!Number.isFinite(size) || size < 0) return undefined;
  if (sfx === '') return Math.trunc(size);
  if (sfx.length > 3) return undefined;
  sfx = sfx.toLowerCase();
  if (sfx[0] === 'b') return sfx.length > 1 ? undefined : Math.trunc(size);
  const mul = BINARY[sfx[0]];
  if (mul === undefined) return undefined;
  size *= mul;
  if (sfx.length === 2 && sfx[1] !== 'b') return undefined;
  if (sfx.length === 3 && sfx.slice(1) !== 'ib') return undefined;
  return Math.trunc(size);
}

/** Go's strconv.ParseUint(s, base, 32). */
export function parseUint32(s: string, base: 8 | 10): number | undefined {
  const re = base === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!re.test(s)) return undefined;
  const n = Number.parseInt(s, base);
  return n <= 0xffffffff ? n : undefined;
}

/** Go's strconv.ParseInt(s, 10, 32). */
export function parseInt32(s: string): number | undefined {
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const n = Number.parseInt(s, 10);
  return n >= -(2 ** 31) && n <= 2 ** 31 - 1 ? n : undefined;
}
