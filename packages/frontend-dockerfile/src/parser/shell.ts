import { LocalParseError } from './errors.js';

/**
 * The Dockerfile shell lexer: word splitting, quotes, escapes and variable
 * substitution, as BuildKit's `frontend/dockerfile/shell` package does it
 * (which mimics POSIX sh for the subset Dockerfiles use).
 *
 * Supported: `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`,
 * `${V:?msg}`, `${V?msg}`, `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}` (glob
 * patterns with `*` and `?`), `${V/p/r}`, `${V//p/r}`; single quotes are
 * literal, double quotes allow `$` and escape `"`, `$` and the escape char.
 */

/** Variables visible to an expansion. Keys are case-sensitive (Linux). */
export interface EnvGetter {
  get(key: string): string | undefined;
  keys(): string[];
}

/** An EnvGetter over `KEY=VALUE` strings; a later key wins, a bare `KEY` is empty. */
export function envFromList(list: readonly string[]): EnvGetter {
  const map = new Map<string, string>();
  for (const entry of list) {
    const eq = entry.indexOf('=');
    if (eq < 0) map.set(entry, '');
    else map.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return envFromMap(map);
}

export function envFromMap(map: ReadonlyMap<string, string> | Record<string, string>): EnvGetter {
  const m = map instanceof Map ? map : new Map(Object.entries(map));
  return { get: (k) => m.get(k), keys: () => [...m.keys()] };
}

export const emptyEnv: EnvGetter = { get: () => undefined, keys: () => [] };

/**
 * Bounds of variable expansion. Text grows by substitution far beyond the
 * Dockerfile's own size (each `ARG A2=$A1$A1` doubles a value), so these
 * bounds keep a hostile Dockerfile from exhausting memory; a legitimate one
 * stays far below them. BuildKit's parser bounds a Dockerfile line to 64 KiB;
 * an expanded word may be 16 times that.
 */
export const EXPANSION_LIMITS = {
  /** Characters of one expanded word (an ENV or LABEL value, an ARG default, a path, …). */
  maxWordLength: 1 << 20,
  /** Characters substituted for variables in total, per budget (one Dockerfile conversion). */
  maxSubstituted: 64 << 20,
  /** Depth of `${…}` substitutions nested in one another. */
  maxNesting: 64,
} as const;

/**
 * The characters substitutions may produce, shared by the lexers of one
 * Dockerfile conversion: what bounds the sum of many expansions (10,000
 * `LABEL` lines each copying a 1 MiB variable) where the word limit bounds
 * each one.
 */
export class ExpansionBudget {
  #used = 0;

  constructor(readonly limit: number = EXPANSION_LIMITS.maxSubstituted) {}

  /** Counts `n` substituted characters; throws LocalParseError when the total passes the limit. */
  charge(n: number): void {
    this.#used += n;
    if (this.#used > this.limit) {
      throw new LocalParseError(`variable expansion exceeds the limit of ${formatSize(this.limit)} substituted in one Dockerfile`);
    }
  }
}

/** `1048576` → `1 MiB (1048576 characters)`. */
function formatSize(chars: number): string {
  const mib = chars / (1 << 20);
  const short = Number.isInteger(mib) ? `${mib} MiB` : `${Math.round(chars / 1024)} KiB`;
  return `${short} (${chars} characters)`;
}

export interface ShellLexOptions {
  /** Keep quote characters in the result (quotes still group words). */
  rawQuotes?: boolean;
  /** Keep escape characters in the result. */
  rawEscapes?: boolean;
  /** Treat quotes as ordinary characters. */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as they are written. */
  skipUnsetEnv?: boolean;
  /** What substitutions may produce in total; default: a budget of this lexer's own. */
  budget?: ExpansionBudget;
  /** The longest expanded word; default `EXPANSION_LIMITS.maxWordLength`. */
  maxWordLength?: number;
}

export interface ProcessWordResult {
  result: string;
  /** Words after splitting on unquoted whitespace (only for processWords). */
  words: string[];
  /** Variables that were referenced and set. */
  matched: Set<string>;
  /** Variables that were referenced but not set. */
  unmatched: Set<string>;
}

const EOF = undefined;
type Ch = string | undefined;

export class ShellLex {
  readonly escapeToken: string;
  readonly options: Readonly<ShellLexOptions>;
  readonly budget: ExpansionBudget;
  readonly maxWordLength: number;

  constructor(escapeToken = '\\', options: ShellLexOptions = {}) {
    this.escapeToken = escapeToken;
    this.options = { ...options };
    this.budget = options.budget ?? new ExpansionBudget();
    this.maxWordLength = options.maxWordLength ?? EXPANSION_LIMITS.maxWordLength;
  }

  /** Expands `word` as one word (whitespace kept); reports the variables used. */
  processWord(word: string, env: EnvGetter): ProcessWordResult {
    return new ShellWord(this, word, env, false).process(word);
  }

  /** Expands `word` then splits it into words on unquoted whitespace. */
  processWords(word: string, env: EnvGetter): string[] {
    return new ShellWord(this, word, env, true).process(word).words;
  }
}

/** Splits expanded text into words; the one of `processWord` (`split` false) keeps nothing. */
class WordsBuilder {
  constructor(private readonly split: boolean) {}

  buf = '';
  words: string[] = [];
  inWord = false;

  addChar(ch: string): void {
    if (!this.split) return;
    if (isSpace(ch)) {
      if (this.inWord && this.buf.length !== 0) {
        this.words.push(this.buf);
        this.buf = '';
        this.inWord = false;
      }
    } else {
      this.addRawChar(ch);
    }
  }
  addRawChar(ch: string): void {
    if (!this.split) return;
    this.buf += ch;
    this.inWord = true;
  }
  addString(s: string): void {
    if (!this.split) return;
    // Runs between whitespace are appended whole (whitespace is never half of a surrogate pair).
    let start = 0;
    for (let i = 0; i < s.length; i++) {
      if (!isSpace(s[i])) continue;
      if (i > start) this.addRawString(s.slice(start, i));
      this.addChar(s[i]);
      start = i + 1;
    }
    if (start < s.length) this.addRawString(s.slice(start));
  }
  addRawString(s: string): void {
    if (!this.split) return;
    this.buf += s;
    this.inWord = true;
  }
  getWords(): string[] {
    if (this.buf.length > 0) {
      this.words.push(this.buf);
      this.buf = '';
      this.inWord = false;
    }
    return this.words;
  }
}

class ShellWord {
  private readonly chars: string[];
  private pos = 0;
  private rawEscapes: boolean;
  /** How many `${` substitutions enclose the current position. */
  private nesting = 0;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(
    private readonly lex: ShellLex,
    word: string,
    private readonly env: EnvGetter,
    /** Whether `process` splits the result into words. */
    private readonly splitWords: boolean,
  ) {
    this.chars = Array.from(word);
    this.rawEscapes = lex.options.rawEscapes ?? false;
  }

  process(source: string): ProcessWordResult {
    try {
      const [result, words] = this.processStopOn(EOF, this.rawEscapes);
      return { result, words, matched: this.matched, unmatched: this.unmatched };
    } catch (err) {
      if (err instanceof LocalParseError) {
        // A hostile word can be as long as the Dockerfile: quote its start only.
        const shown = source.length > 200 ? `${source.slice(0, 200)}…` : source;
        throw new LocalParseError(`failed to process ${goQuote(shown)}: ${err.message}`);
      }
      throw err;
    }
  }

  private peek(): Ch {
    return this.chars[this.pos];
  }
  private next(): Ch {
    const ch = this.chars[this.pos];
    if (ch !== undefined) this.pos++;
    return ch;
  }

  private processStopOn(stopChar: Ch, rawEscapes: boolean): [string, string[]] {
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      let result = '';
      const words = new WordsBuilder(this.splitWords);
      const quotes = !this.lex.options.skipProcessQuotes;
      while (this.peek() !== EOF) {
        let ch = this.peek() as string;
        if (stopChar !== EOF && ch === stopChar) {
          this.next();
          return [result, words.getWords()];
        }
        if (ch === '$') {
          const tmp = this.processDollar();
          result = this.grow(result, tmp);
          words.addString(tmp);
        } else if (ch === '<') {
          const tmp = this.processPossibleHeredoc();
          result += tmp;
          words.addRawString(tmp);
        } else if (quotes && ch === "'") {
          const tmp = this.processSingleQuote();
          result += tmp;
          words.addRawString(tmp);
        } else if (quotes && ch === '"') {
          const tmp = this.processDoubleQuote();
          result = this.grow(result, tmp);
          words.addRawString(tmp);
        } else {
          ch = this.next() as string;
          if (ch === this.lex.escapeToken) {
            if (this.rawEscapes) {
              words.addRawChar(ch);
              result += ch;
            }
            // The escape char escapes the next char; at the end it is dropped.
            const escaped = this.next();
            if (escaped === EOF) break;
            words.addRawChar(escaped);
            result += escaped;
          } else {
            words.addChar(ch);
            result += ch;
          }
        }
      }
      if (stopChar !== EOF) {
        throw new LocalParseError(`unexpected end of statement while looking for matching ${stopChar}`);
      }
      return [result, words.getWords()];
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processSingleQuote(): string {
    // Everything up to the next ' is literal; a ' cannot be escaped inside.
    let result = '';
    const open = this.next() as string;
    if (this.lex.options.rawQuotes) result += open;
    for (;;) {
      const ch = this.next();
      if (ch === EOF) throw new LocalParseError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") {
        if (this.lex.options.rawQuotes) result += ch;
        return result;
      }
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    // Everything up to the next unescaped " is literal except $ (expanded);
    // the escape char escapes only ", $ and itself, otherwise it stays.
    let result = '';
    const open = this.next() as string;
    if (this.lex.options.rawQuotes) result += open;
    for (;;) {
      const peek = this.peek();
      if (peek === EOF) throw new LocalParseError('unexpected end of statement while looking for matching double-quote');
      if (peek === '"') {
        this.next();
        if (this.lex.options.rawQuotes) result += '"';
        return result;
      }
      if (peek === '$') {
        result = this.grow(result, this.processDollar());
        continue;
      }
      let ch = this.next() as string;
      if (ch === this.lex.escapeToken) {
        if (this.rawEscapes) result += ch;
        const after = this.peek();
        if (after === EOF) continue; // a trailing escape is ignored
        if (after === '"' || after === '$' || after === this.lex.escapeToken) ch = this.next() as string;
      }
      result += ch;
    }
  }

  private processDollar(): string {
    this.next(); // $
    if (this.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const value = this.getEnv(name);
      if (value === undefined && this.lex.options.skipUnsetEnv) return '$' + name;
      return value ?? '';
    }
    this.next(); // {
    if (++this.nesting > EXPANSION_LIMITS.maxNesting) {
      throw new LocalParseError(`variable substitutions are nested more than ${EXPANSION_LIMITS.maxNesting} deep`);
    }
    try {
      return this.processBraced();
    } finally {
      this.nesting--;
    }
  }

  /** The rest of a `${…}` substitution, after the `{`. */
  private processBraced(): string {
    const first = this.peek();
    if (first === EOF) throw new LocalParseError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new LocalParseError('syntax error: bad substitution');

    const name = this.processName();
    let ch = this.next();
    if (ch === EOF) throw new LocalParseError("syntax error: missing '}'");
    let modifier = ch;

    if (ch === '}') {
      const value = this.getEnv(name);
      if (value === undefined && this.lex.options.skipUnsetEnv) return `\${${name}}`;
      return value ?? '';
    }

    if (ch === ':' || ch === '+' || ch === '-' || ch === '?' || ch === '#' || ch === '%') {
      let nullIsUnset = false;
      if (ch === ':') {
        nullIsUnset = true;
        ch = this.next();
        if (ch === EOF) throw new LocalParseError("syntax error: missing '}'");
        modifier += ch;
      }
      const patternOp = ch === '#' || ch === '%';
      if (nullIsUnset && patternOp) throw new LocalParseError(`unsupported modifier (${modifier}) in substitution`);
      let word: string;
      try {
        [word] = this.processStopOn('}', patternOp);
      } catch (err) {
        if (this.peek() === EOF) throw new LocalParseError("syntax error: missing '}'");
        throw err;
      }

      const value = this.getEnv(name);
      const set = value !== undefined;
      if (this.lex.options.skipUnsetEnv && !set) return `\${${name}${modifier}${word}}`;

      switch (ch) {
        case '-':
          return !set || (nullIsUnset && value === '') ? word : value;
        case '+':
          return !set || (nullIsUnset && value === '') ? '' : word;
        case '?':
          if (!set) throw new LocalParseError(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`);
          if (nullIsUnset && value === '') throw new LocalParseError(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`);
          return value;
        case '#':
        case '%': {
          // # and % remove the shortest match, ## and %% the longest.
          let greedy = false;
          if (word.length > 0 && word[0] === ch) {
            greedy = true;
            word = word.slice(1);
          }
          return ch === '%' ? trimSuffix(word, value ?? '', greedy) : trimPrefix(word, value ?? '', greedy);
        }
        default:
          throw new LocalParseError(`unsupported modifier (${modifier}) in substitution`);
      }
    }

    if (ch === '/') {
      const replaceAll = this.peek() === '/';
      if (replaceAll) this.next();
      let pattern: string;
      try {
        [pattern] = this.processStopOn('/', true);
      } catch (err) {
        if (this.peek() === EOF) throw new LocalParseError("syntax error: missing '/' in ${}");
        throw err;
      }
      let replacement: string;
      try {
        [replacement] = this.processStopOn('}', true);
      } catch (err) {
        if (this.peek() === EOF) throw new LocalParseError("syntax error: missing '}'");
        throw err;
      }
      const value = this.getEnv(name);
      if (value === undefined && this.lex.options.skipUnsetEnv) return `\${${name}/${pattern}/${replacement}}`;
      return replaceMatches(compilePattern(pattern), value ?? '', replacement, replaceAll, this.lex.maxWordLength);
    }

    throw new LocalParseError(`unsupported modifier (${modifier}) in substitution`);
  }

  /** A variable name: letters, digits, _; or all digits; or one special parameter. */
  private processName(): string {
    let name = '';
    for (;;) {
      const ch = this.peek();
      if (ch === EOF) break;
      if (name.length === 0 && isDigit(ch)) {
        while (this.peek() !== EOF && isDigit(this.peek() as string)) name += this.next();
        return name;
      }
      if (name.length === 0 && isSpecialParam(ch)) {
        this.next();
        return ch;
      }
      if (!isLetter(ch) && !isDigit(ch) && ch !== '_') break;
      name += this.next();
    }
    return name;
  }

  private processPossibleHeredoc(): string {
    this.next(); // <
    if (this.peek() !== '<') return '<';
    this.next();
    // A heredoc may have blanks between << and its word.
    let space = '';
    while (this.peek() === ' ' || this.peek() === '\t' || this.peek() === '\r') space += this.next();
    return '<<' + space;
  }

  private getEnv(name: string): string | undefined {
    const v = this.env.get(name);
    if (v !== undefined) {
      this.matched.add(name);
      this.lex.budget.charge(v.length);
    } else this.unmatched.add(name);
    return v;
  }

  /** `text + more`; throws LocalParseError when that is longer than an expanded word may be. */
  private grow(text: string, more: string): string {
    if (text.length + more.length > this.lex.maxWordLength) throw wordTooLong(this.lex.maxWordLength);
    return text + more;
  }
}

// --- character classes (as Go's unicode package) ---

const SPACE_RE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/;
const LETTER_RE = /^\p{L}$/u;
const DIGIT_RE = /^\p{Nd}$/u;

/** Go's unicode.IsSpace. */
export function isSpace(ch: string): boolean {
  return SPACE_RE.test(ch);
}
function isLetter(ch: string): boolean {
  return LETTER_RE.test(ch);
}
function isDigit(ch: string): boolean {
  return DIGIT_RE.test(ch);
}
function isSpecialParam(ch: string): boolean {
  return '@*#?-$!0'.includes(ch);
}

// --- glob patterns of ${V#p}, ${V%p}, ${V/p/r} ---

type PatternToken = { kind: 'literal'; ch: string } | { kind: 'any' } | { kind: 'star' };

/**
 * A shell pattern: `*` any run of characters, `?` one character, `\` escapes
 * `*`, `?` and `\` (`\}` and `\/` are the escaped delimiters of `${}`).
 * Neither wildcard matches a newline and bracket expressions are not
 * supported, as in BuildKit (which converts the pattern to a Go regexp).
 * Matching follows the regexp's leftmost-first preference, memoized, so a
 * hostile pattern cannot take exponential time.
 */
export class ShellPattern {
  private readonly tokens: PatternToken[] = [];

  constructor(pattern: string) {
    const chars = Array.from(pattern);
    for (let i = 0; i < chars.length; i++) {
      const ch = chars[i];
      if (ch === '*') this.tokens.push({ kind: 'star' });
      else if (ch === '?') this.tokens.push({ kind: 'any' });
      else if (ch === '\\') {
        const next = chars[i + 1];
        if (next === '}' || next === '/') continue;
        i++;
        if (next !== '*' && next !== '?' && next !== '\\') throw new LocalParseError(`invalid escape '\\${next ?? ''}'`);
        this.tokens.push({ kind: 'literal', ch: next });
      } else this.tokens.push({ kind: 'literal', ch });
    }
  }

  /**
   * Where the match starting at `start` ends (an index into `chars`), or -1.
   * `greedy` stars prefer the longest run, others the shortest.
   */
  matchAt(chars: readonly string[], start: number, greedy: boolean, memo = new Map<number, number>()): number {
    const n = chars.length;
    const tokens = this.tokens;
    const search = (pi: number, vi: number): number => {
      // Literal and ? tokens up to the next star match one way only.
      while (pi < tokens.length && tokens[pi].kind !== 'star') {
        const t = tokens[pi];
        if (vi >= n || chars[vi] === '\n' || (t.kind === 'literal' && chars[vi] !== t.ch)) return -1;
        pi++;
        vi++;
      }
      if (pi === tokens.length) return vi;
      const key = pi * (n + 1) + vi;
      const known = memo.get(key);
      if (known !== undefined) return known;
      let max = 0;
      while (vi + max < n && chars[vi + max] !== '\n') max++;
      let result = -1;
      for (let i = 0; i <= max; i++) {
        const r = search(pi + 1, vi + (greedy ? max - i : i));
        if (r >= 0) {
          result = r;
          break;
        }
      }
      memo.set(key, result);
      return result;
    };
    return search(0, start);
  }
}

function compilePattern(pattern: string): ShellPattern {
  try {
    return new ShellPattern(pattern);
  } catch (err) {
    throw new LocalParseError(`invalid pattern (${pattern}) in substitution: ${(err as Error).message}`);
  }
}

/** `${V#p}` / `${V##p}`: removes the shortest / longest prefix matching `pattern`. */
function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const chars = Array.from(value);
  const end = compilePattern(pattern).matchAt(chars, 0, greedy);
  return end < 0 ? value : chars.slice(end).join('');
}

/** `${V%p}` / `${V%%p}`: a prefix trim of the reversed value with the reversed pattern. */
function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}

export function reverseString(s: string): string {
  return Array.from(s).reverse().join('');
}

/** Reverses a pattern keeping escapes in front of what they escape: `a\*c` → `c\*a`. */
export function reversePattern(pattern: string): string {
  const r = Array.from(pattern);
  const out: string[] = new Array(r.length);
  const last = r.length - 1;
  for (let i = 0; i <= last; ) {
    const outIdx = last - i;
    if (r[i] === '\\' && i !== last) {
      out[outIdx - 1] = r[i];
      out[outIdx] = r[i + 1];
      i += 2;
    } else {
      out[outIdx] = r[i];
      i++;
    }
  }
  return out.join('');
}

/**
 * `${V/p/r}` and `${V//p/r}` with Go's regexp semantics: the leftmost match
 * (stars greedy), `$0`/`${0}` in the replacement is the match and other
 * `$name`s are empty, `$$` is `$`, and an empty match right after a match is
 * not replaced.
 */
function replaceMatches(pattern: ShellPattern, value: string, replacement: string, all: boolean, maxLength: number): string {
  const chars = Array.from(value);
  const memo = new Map<number, number>();
  const find = (from: number): [number, number] | undefined => {
    for (let s = from; s <= chars.length; s++) {
      const e = pattern.matchAt(chars, s, true, memo);
      if (e >= 0) return [s, e];
    }
    return undefined;
  };
  const text = (a: number, b: number): string => chars.slice(a, b).join('');
  if (!all) {
    const m = find(0);
    if (!m) return value;
    return text(0, m[0]) + expandTemplate(replacement, text(m[0], m[1])) + text(m[1], chars.length);
  }
  let out = '';
  let lastMatchEnd = 0;
  let searchPos = 0;
  while (searchPos <= chars.length) {
    const m = find(searchPos);
    if (!m) break;
    const [a0, a1] = m;
    out += text(lastMatchEnd, a0);
    if (a1 > lastMatchEnd || a0 === 0) out += expandTemplate(replacement, text(a0, a1));
    if (out.length > maxLength) throw wordTooLong(maxLength);
    lastMatchEnd = a1;
    searchPos = searchPos + 1 > a1 ? searchPos + 1 : a1;
  }
  return out + text(lastMatchEnd, chars.length);
}

function wordTooLong(maxLength: number): LocalParseError {
  return new LocalParseError(`the expanded value is longer than ${formatSize(maxLength)}, the limit of an expanded word`);
}

function expandTemplate(template: string, match: string): string {
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (c !== '$') {
      out += c;
      continue;
    }
    const rest = template.slice(i + 1);
    if (rest.startsWith('$')) {
      out += '$';
      i++;
      continue;
    }
    const m = /^\{([A-Za-z0-9_]+)\}/.exec(rest) ?? /^([A-Za-z0-9_]+)/.exec(rest);
    if (!m) {
      out += '$';
      continue;
    }
    const name = m[1];
    if (/^[0-9]+$/.test(name) && Number(name) === 0) out += match;
    i += m[0].length;
  }
  return out;
}

/** Go's %q for a string (printable Unicode kept, others escaped). */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0) as number;
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\x07') out += '\\a';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (ch === '\v') out += '\\v';
    else if (cp < 0x20 || cp === 0x7f) out += '\\x' + cp.toString(16).padStart(2, '0');
    else if (!isPrintable(ch)) out += cp > 0xffff ? '\\U' + cp.toString(16).padStart(8, '0') : '\\u' + cp.toString(16).padStart(4, '0');
    else out += ch;
  }
  return out + '"';
}

const PRINTABLE_RE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;
function isPrintable(ch: string): boolean {
  return PRINTABLE_RE.test(ch);
}
