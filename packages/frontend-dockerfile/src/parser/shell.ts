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

export interface ShellLexOptions {
  /** Keep quote characters in the result (quotes still group words). */
  rawQuotes?: boolean;
  /** Keep escape characters in the result. */
  rawEscapes?: boolean;
  /** Treat quotes as ordinary characters. */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as they are written. */
  skipUnsetEnv?: boolean;
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

  constructor(escapeToken = '\\', options: ShellLexOptions = {}) {
    this.escapeToken = escapeToken;
    this.options = { ...options };
  }

  /** Expands `word` as one word (whitespace kept); reports the variables used. */
  processWord(word: string, env: EnvGetter): ProcessWordResult {
    return new ShellWord(this, word, env).process(word);
  }

  /** Expands `word` then splits it into words on unquoted whitespace. */
  processWords(word: string, env: EnvGetter): string[] {
    return new ShellWord(this, word, env).process(word).words;
  }
}

class WordsBuilder {
  buf = '';
  words: string[] = [];
  inWord = false;

  addChar(ch: string): void {
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
    this.buf += ch;
    this.inWord = true;
  }
  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }
  addRawString(s: string): void {
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
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(
    private readonly lex: ShellLex,
    word: string,
    private readonly env: EnvGetter,
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
        throw new LocalParseError(`failed to process ${goQuote(source)}: ${err.message}`);
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
      const words = new WordsBuilder();
      const quotes = !this.lex.options.skipProcessQuotes;
      while (this.peek() !== EOF) {
        let ch = this.peek() as string;
        if (stopChar !== EOF && ch === stopChar) {
          this.next();
          return [result, words.getWords()];
        }
        if (ch === '$') {
          const tmp = this.processDollar();
          result += tmp;
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
          result += tmp;
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
        result += this.processDollar();
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
      let re: RegExp;
      try {
        re = shellPatternToRegExp(pattern, true, false);
      } catch (err) {
        throw new LocalParseError(`invalid pattern (${pattern}) in substitution: ${(err as Error).message}`);
      }
      return replaceMatches(re, value ?? '', replacement, replaceAll);
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
    if (v !== undefined) this.matched.add(name);
    else this.unmatched.add(name);
    return v;
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

/**
 * Converts a shell pattern (`*` any string, `?` one char, `\` escapes `*`, `?`
 * and `\`; `\}` and `\/` are the escaped delimiters) to a RegExp. Bracket
 * expressions are not supported (as in BuildKit).
 */
export function shellPatternToRegExp(pattern: string, greedy: boolean, anchored: boolean): RegExp {
  const chars = Array.from(pattern);
  let out = anchored ? '^' : '';
  const any = '[^\\n]';
  for (let i = 0; i < chars.length; i++) {
    let tok = chars[i];
    switch (tok) {
      case '*':
        out += greedy ? `${any}*` : `${any}*?`;
        continue;
      case '?':
        out += any;
        continue;
      case '\\': {
        const nextCh = chars[i + 1];
        if (nextCh === '}' || nextCh === '/') continue;
        i++;
        tok = chars[i];
        if (tok !== '*' && tok !== '?' && tok !== '\\') throw new Error(`invalid escape '\\${tok ?? ''}'`);
        out += '\\' + tok;
        continue;
      }
      case '[': case ']': case '{': case '}': case '.': case '+': case '(': case ')': case '|': case '^': case '$':
        out += '\\' + tok;
        continue;
      default:
        out += tok;
    }
  }
  return new RegExp(out, 'gu');
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  let re: RegExp;
  try {
    re = shellPatternToRegExp(pattern, greedy, true);
  } catch (err) {
    throw new LocalParseError(`invalid pattern (${pattern}) in substitution: ${(err as Error).message}`);
  }
  re.lastIndex = 0;
  const m = re.exec(value);
  return m ? value.slice(m.index + m[0].length) : value;
}

function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  // A RegExp cannot find the shortest rightmost match, so reverse both the
  // pattern and the value and trim a prefix instead.
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
 * Replaces the first (or every) match of `re` in `value`, with Go's regexp
 * semantics: `$n`/`${n}` in the replacement is a group (only `$0` exists),
 * `$$` is `$`, and an empty match right after a match is not replaced.
 */
function replaceMatches(re: RegExp, value: string, replacement: string, all: boolean): string {
  if (!all) {
    re.lastIndex = 0;
    const m = re.exec(value);
    if (!m) return value;
    return value.slice(0, m.index) + expandTemplate(replacement, m[0]) + value.slice(m.index + m[0].length);
  }
  let out = '';
  let lastMatchEnd = 0;
  let searchPos = 0;
  while (searchPos <= value.length) {
    re.lastIndex = searchPos;
    const m = re.exec(value);
    if (!m) break;
    const a0 = m.index;
    const a1 = a0 + m[0].length;
    out += value.slice(lastMatchEnd, a0);
    if (a1 > lastMatchEnd || a0 === 0) out += expandTemplate(replacement, m[0]);
    lastMatchEnd = a1;
    const cp = value.codePointAt(searchPos);
    const width = cp === undefined ? 1 : cp > 0xffff ? 2 : 1;
    if (searchPos + width > a1) searchPos += width;
    else if (searchPos + 1 > a1) searchPos++;
    else searchPos = a1;
  }
  return out + value.slice(lastMatchEnd);
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
