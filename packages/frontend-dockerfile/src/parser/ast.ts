import { type Steps, runSteps } from './steps.js';
import { DirectiveParser, type Directive, parseDirectives } from './directives.js';
import { LocalParseError } from './errors.js';
import { ShellLex, emptyEnv, isSpace } from './shell.js';

/**
 * The low-level Dockerfile parser (BuildKit's `frontend/dockerfile/parser`):
 * text → logical lines (continuations joined, comments dropped, heredoc bodies
 * attached) → one RawNode per instruction with its words split the way that
 * instruction splits them. No instruction semantics here; see instructions.ts.
 */

export interface Heredoc {
  /** The delimiter word, quotes removed. */
  name: string;
  /** The `N` of `N<<EOF` (0 when absent). */
  fileDescriptor: number;
  /** False when any part of the delimiter was quoted: the body is not expanded. */
  expand: boolean;
  /** `<<-`: leading tabs are stripped from the body (and the delimiter line). */
  chomp: boolean;
  /** The body, each line with its newline, without the delimiter line. */
  content: string;
}

export interface RawNode {
  /** The instruction keyword as written (`RUN`, `run`, `Run`). */
  command: string;
  /** `--name[=value]` words before the arguments, quotes removed. */
  flags: string[];
  /**
   * The arguments, split per instruction: ENV/LABEL as key, value, separator
   * triples (separator `=` or `` for the legacy `KEY value` form); RUN, CMD,
   * ENTRYPOINT, SHELL as one string (shell form) or the JSON array; HEALTHCHECK
   * as the type then the command.
   */
  args: string[];
  /** The arguments were a JSON array (exec form). */
  json: boolean;
  heredocs: Heredoc[];
  /** The logical line: continuations joined, comments removed. */
  original: string;
  startLine: number;
  endLine: number;
  /** Comment lines right above the instruction (without `#`), for doc comments and `# check=` overrides. */
  comments: string[];
  /** The instruction of ONBUILD. */
  child?: RawNode;
}

export interface EmptyContinuationWarning {
  /** The last line of the instruction that had empty continuation lines. */
  line: number;
  /** The joined instruction. */
  instruction: string;
}

export interface RawDockerfile {
  nodes: RawNode[];
  escapeToken: string;
  directives: Directive[];
  emptyContinuations: EmptyContinuationWarning[];
  /** The physical lines of the file, without line endings; `lines[0]` is line 1. */
  lines: string[];
}

/** An error at a line range, before it is given a file name and column. */
export class RawParseError extends Error {
  constructor(
    message: string,
    readonly startLine: number,
    readonly endLine: number,
    readonly token?: string,
  ) {
    super(message);
    this.name = 'RawParseError';
  }
}

// Go's bufio.Scanner limit for one line (bytes, newline included).
const MAX_LINE_BYTES = 64 * 1024;

const RE_WHITESPACE = /[\t\v\f\r ]+/;
const RE_HEREDOC = /^([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)$/;
const HEREDOC_INSTRUCTIONS = new Set(['add', 'copy', 'run']);

interface Directives {
  escapeToken: string;
  continuation: RegExp;
  parser: DirectiveParser;
}

function setEscapeToken(d: Directives, token: string): void {
  if (token !== '`' && token !== '\\') throw new LocalParseError(`invalid escape token '${token}' does not match \` or \\`);
  d.escapeToken = token;
  const e = token === '\\' ? '\\\\' : '`';
  // The escape char as the last non-blank char continues the line, unless it
  // is itself escaped; or a line made only of it.
  d.continuation = new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
}

/** Splits `text` into lines the way Go's ScanLines variant does: each line keeps its `\n`. */
function scanLines(text: string): string[] {
  const out: string[] = [];
  let pos = 0;
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos);
    if (nl < 0) {
      out.push(text.slice(pos));
      break;
    }
    out.push(text.slice(pos, nl + 1));
    pos = nl + 1;
  }
  return out;
}

const trimNewline = (s: string): string => s.replace(/[\r\n]+$/, '');
const trimLeadingWhitespace = (s: string): string => {
  let i = 0;
  while (i < s.length && isSpace(s[i])) i++;
  return s.slice(i);
};
const trimSpace = (s: string): string => {
  let a = 0;
  let b = s.length;
  while (a < b && isSpace(s[a])) a++;
  while (b > a && isSpace(s[b - 1])) b--;
  return s.slice(a, b);
};
const isComment = (line: string): boolean => trimLeadingWhitespace(line).startsWith('#');

/** Parses Dockerfile text into raw nodes. Throws RawParseError. */
export function parseRaw(text: string): RawDockerfile {
  return runSteps(parseRawSteps(text));
}

/** `parseRaw` as steps: one per instruction. */
export function* parseRawSteps(text: string): Steps<RawDockerfile> {
  const d: Directives = { escapeToken: '\\', continuation: /$^/, parser: new DirectiveParser() };
  setEscapeToken(d, '\\');
  const physical = scanLines(text.startsWith('\uFEFF') ? text.slice(1) : text);
  const nodes: RawNode[] = [];
  const emptyContinuations: EmptyContinuationWarning[] = [];
  let comments: string[] = [];
  let currentLine = 0;
  let i = 0;

  const nextLine = (): string | undefined => {
    if (i >= physical.length) return undefined;
    const line = physical[i++];
    if (line.length > MAX_LINE_BYTES / 4 && Buffer.byteLength(line) > MAX_LINE_BYTES) {
      throw new RawParseError(`dockerfile line greater than max allowed size of ${MAX_LINE_BYTES - 1}`, currentLine + 1, currentLine + 1);
    }
    return line;
  };

  // Strips the newline (and leading blanks), applies a directive, drops a comment.
  const processLine = (token: string, stripLeft: boolean): { line: string; directive: boolean } => {
    let line = trimNewline(token);
    if (stripLeft) line = trimLeadingWhitespace(line);
    let directive = false;
    try {
      const dir = d.parser.parseLine(line);
      if (dir) {
        directive = true;
        if (dir.name === 'escape') setEscapeToken(d, dir.value);
      }
    } catch (err) {
      throw new RawParseError((err as Error).message, currentLine + 1, currentLine + 1);
    }
    return { line: isComment(line) ? '' : line, directive };
  };

  const trimContinuation = (line: string): { line: string; end: boolean } => {
    if (d.continuation.test(line)) return { line: line.replace(d.continuation, '$1'), end: false };
    return { line, end: true };
  };

  for (let raw = nextLine(); raw !== undefined; raw = nextLine()) {
    yield;
    if (isComment(raw)) {
      const comment = trimSpace(trimLeadingWhitespace(raw).slice(1));
      if (comment === '') comments = [];
      else comments.push(comment);
    }
    const first = processLine(raw, true);
    if (first.directive) comments.pop();
    currentLine++;
    const startLine = currentLine;
    let { line: bytes, end: isEndOfLine } = trimContinuation(first.line);
    if (isEndOfLine && bytes.length === 0) continue;

    let buf = bytes;
    let hasEmptyContinuation = false;
    while (!isEndOfLine) {
      const rawNext = nextLine();
      if (rawNext === undefined) break;
      const cont = processLine(rawNext, false);
      currentLine++;
      if (isComment(rawNext)) continue;
      if (trimLeadingWhitespace(trimNewline(cont.line)).length === 0) {
        hasEmptyContinuation = true;
        continue;
      }
      ({ line: bytes, end: isEndOfLine } = trimContinuation(cont.line));
      buf += bytes;
    }

    if (hasEmptyContinuation) emptyContinuations.push({ line: currentLine, instruction: buf });

    let node: RawNode;
    try {
      node = nodeFromLine(buf, d, comments);
    } catch (err) {
      if (err instanceof LocalParseError) throw new RawParseError(err.message, startLine, currentLine, err.token);
      throw err;
    }

    if (canContainHeredoc(node) && buf.includes('<<')) {
      let docs: Heredoc[];
      try {
        docs = heredocsFromLine(buf);
      } catch (err) {
        if (err instanceof LocalParseError) throw new RawParseError(err.message, startLine, currentLine, '<<');
        throw err;
      }
      for (const doc of docs) {
        let terminated = false;
        let content = '';
        for (let body = nextLine(); body !== undefined; body = nextLine()) {
          currentLine++;
          let candidate = trimNewline(body);
          if (doc.chomp) candidate = candidate.replace(/^\t+/, '');
          if (candidate === doc.name) {
            terminated = true;
            break;
          }
          content += body;
        }
        if (!terminated) throw new RawParseError(`unterminated heredoc ${doc.name}`, startLine, currentLine, '<<');
        node.heredocs.push({ ...doc, content });
      }
    }

    node.startLine = startLine;
    node.endLine = currentLine;
    nodes.push(node);
    comments = [];
  }

  if (nodes.length === 0) throw new RawParseError('file with no instructions', Math.max(currentLine, 1), Math.max(currentLine, 1));

  return {
    nodes,
    escapeToken: d.escapeToken,
    directives: parseDirectives(text),
    emptyContinuations,
    lines: physical.map(trimNewline),
  };
}

function canContainHeredoc(node: RawNode): boolean {
  const target = node.command.toLowerCase() === 'onbuild' && node.child ? node.child : node;
  return HEREDOC_INSTRUCTIONS.has(target.command.toLowerCase()) && !target.json;
}

/** Splits a logical line into its keyword, flags and arguments. */
function nodeFromLine(line: string, d: Directives, comments: string[]): RawNode {
  const { cmd, flags, args } = splitCommand(line, d);
  const parsed = dispatchArgs(cmd.toLowerCase(), args, d);
  return {
    command: cmd,
    flags,
    args: parsed.args,
    json: parsed.json,
    heredocs: [],
    original: line,
    startLine: 0,
    endLine: 0,
    comments: [...comments],
    ...(parsed.child ? { child: parsed.child } : {}),
  };
}

interface ParsedArgs {
  args: string[];
  json: boolean;
  child?: RawNode;
}

function dispatchArgs(cmd: string, rest: string, d: Directives): ParsedArgs {
  const plain = (args: string[]): ParsedArgs => ({ args, json: false });
  switch (cmd) {
    case 'add':
    case 'copy':
    case 'volume':
      return parseMaybeJSONToList(rest);
    case 'arg':
      return plain(parseWords(rest, d.escapeToken));
    case 'cmd':
    case 'entrypoint':
    case 'run':
    case 'shell':
      return parseMaybeJSON(rest);
    case 'env':
      return plain(parseNameVal(rest, 'ENV', d.escapeToken));
    case 'label':
      return plain(parseNameVal(rest, 'LABEL', d.escapeToken));
    case 'expose':
    case 'from':
      return plain(splitWhitespace(rest));
    case 'healthcheck':
      return parseHealthConfig(rest);
    case 'maintainer':
    case 'stopsignal':
    case 'user':
    case 'workdir':
      return plain(rest === '' ? [] : [rest]);
    case 'onbuild': {
      if (rest === '') return plain([]);
      const child = nodeFromLine(rest, d, []);
      return { args: [child.command, ...child.args], json: false, child };
    }
    default:
      // Unknown instructions are reported by the instruction parser.
      return plain([]);
  }
}

function splitCommand(line: string, d: Directives): { cmd: string; flags: string[]; args: string } {
  const trimmed = trimSpace(line);
  const m = RE_WHITESPACE.exec(trimmed);
  if (!m) return { cmd: trimmed, flags: [], args: '' };
  const cmd = trimmed.slice(0, m.index);
  const { rest, flags } = extractBuilderFlags(trimmed.slice(m.index + m[0].length), d.escapeToken);
  return { cmd, flags, args: trimSpace(rest) };
}

/** Reads the leading `--flag` words; `--` alone ends them. Returns the rest of the line. */
function extractBuilderFlags(line: string, escapeToken: string): { rest: string; flags: string[] } {
  const words: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= line.length; pos++) {
    const atEnd = pos === line.length;
    let ch = atEnd ? '' : line[pos];
    if (phase === 'spaces') {
      if (atEnd) break;
      if (isSpace(ch)) continue;
      if (ch !== '-' || line[pos + 1] !== '-') return { rest: line.slice(pos), flags: words };
      phase = 'word';
    }
    if (atEnd) {
      if (word !== '--' && (blankOK || word.length > 0)) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch)) {
        phase = 'spaces';
        if (word === '--') return { rest: line.slice(pos), flags: words };
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
        continue;
      }
      if (ch === escapeToken) {
        if (pos + 1 === line.length) continue;
        pos++;
        ch = line[pos];
      }
      word += ch;
      continue;
    }
    // in quotes
    if (ch === quote) {
      phase = 'word';
      continue;
    }
    if (ch === escapeToken) {
      if (pos + 1 === line.length) {
        phase = 'word';
        continue;
      }
      pos++;
      ch = line[pos];
    }
    word += ch;
  }
  return { rest: '', flags: words };
}

/**
 * Splits on unquoted whitespace keeping quotes and escapes in the words (they
 * are removed later by variable expansion).
 */
export function parseWords(rest: string, escapeToken: string): string[] {
  const words: string[] = [];
  const chars = Array.from(rest);
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let quote = '';
  let blankOK = false;
  let word = '';
  for (let pos = 0; pos <= chars.length; pos++) {
    const atEnd = pos === chars.length;
    let ch = atEnd ? '' : chars[pos];
    if (phase === 'spaces') {
      if (atEnd) break;
      if (isSpace(ch)) continue;
      phase = 'word';
    }
    if (atEnd) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === escapeToken) {
        if (pos + 1 === chars.length) continue;
        // An escape keeps itself and the next char, even a quote.
        word += ch;
        pos++;
        ch = chars[pos];
      }
      word += ch;
      continue;
    }
    // in quotes
    if (ch === quote) phase = 'word';
    if (ch === escapeToken && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = 'word';
        continue;
      }
      pos++;
      word += ch;
      ch = chars[pos];
    }
    word += ch;
  }
  return words;
}

/** ENV/LABEL: `KEY value` (legacy) or `K=V K2=V2 …`, as key, value, separator triples. */
function parseNameVal(rest: string, key: string, escapeToken: string): string[] {
  const words = parseWords(rest, escapeToken);
  if (words.length === 0) return [];
  if (!words[0].includes('=')) {
    const m = RE_WHITESPACE.exec(rest);
    if (!m) throw new LocalParseError(`${key} must have two arguments`);
    return [rest.slice(0, m.index), rest.slice(m.index + m[0].length), ''];
  }
  const out: string[] = [];
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq < 0) throw new LocalParseError(`Syntax error - can't find = in ${JSON.stringify(word)}. Must be of the form: name=value`, word);
    out.push(word.slice(0, eq), word.slice(eq + 1), '=');
  }
  return out;
}

function splitWhitespace(rest: string): string[] {
  if (rest === '') return [];
  return rest.split(RE_WHITESPACE);
}

const NOT_STRING_ARRAY = 'when using JSON array syntax, arrays must be comprised of strings only';

/** A JSON array of strings, or undefined when `rest` is not a JSON array. Throws when it holds non-strings. */
function parseJSON(rest: string): string[] | undefined {
  const s = trimLeadingWhitespace(rest);
  if (!s.startsWith('[')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(s);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return undefined;
  for (const item of value) if (typeof item !== 'string') throw new LocalParseError(NOT_STRING_ARRAY, '[');
  return value as string[];
}

function parseMaybeJSON(rest: string): ParsedArgs {
  if (rest === '') return { args: [], json: false };
  const json = parseJSON(rest);
  if (json) return { args: json, json: true };
  return { args: [rest], json: false };
}

function parseMaybeJSONToList(rest: string): ParsedArgs {
  const json = parseJSON(rest);
  if (json) return { args: json, json: true };
  return { args: splitWhitespace(rest), json: false };
}

function parseHealthConfig(rest: string): ParsedArgs {
  let sep = 0;
  while (sep < rest.length && !isSpace(rest[sep])) sep++;
  let next = sep;
  while (next < rest.length && isSpace(rest[next])) next++;
  if (sep === 0) return { args: [], json: false };
  const cmd = parseMaybeJSON(rest.slice(next));
  return { args: [rest.slice(0, sep), ...cmd.args], json: cmd.json };
}

// --- heredocs ---

/** The heredoc a word like `<<EOF`, `<<-"EOF"`, `3<<EOF` starts, or undefined. Throws on a bad quote. */
export function parseHeredoc(word: string): Heredoc | undefined {
  const m = RE_HEREDOC.exec(word);
  if (!m) return undefined;
  const rest = m[3];
  if (rest.length === 0) return undefined;
  const plain = new ShellLex('\\', { skipUnsetEnv: true });
  const words = plain.processWords(rest, emptyEnv);
  if (words.length !== 1) return undefined;
  const raw = new ShellLex('\\', { skipUnsetEnv: true, rawQuotes: true });
  const rawWords = raw.processWords(rest, emptyEnv);
  if (rawWords.length !== words.length) throw new LocalParseError(`internal lexing of heredoc produced inconsistent results: ${rest}`);
  const quotes = (s: string): number => s.split("'").length + s.split('"').length - 2;
  return {
    name: words[0],
    fileDescriptor: m[1] === '' ? 0 : Number.parseInt(m[1], 10),
    // Quotes anywhere in the delimiter disable expansion of the body.
    expand: quotes(words[0]) === quotes(rawWords[0]),
    chomp: m[2] === '-',
    content: '',
  };
}

/** The heredocs opened on a logical line, in order. */
export function heredocsFromLine(line: string): Heredoc[] {
  const lex = new ShellLex('\\', { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true });
  let words: string[];
  try {
    words = lex.processWords(line, emptyEnv);
  } catch {
    words = [];
  }
  const docs: Heredoc[] = [];
  for (const word of words) {
    const doc = parseHeredoc(word);
    if (doc) docs.push(doc);
  }
  return docs;
}

/** Strips leading tabs from every line (the body of a `<<-` heredoc). */
export function chompHeredocContent(content: string): string {
  return content.replace(/^\t+/gm, '');
}
