import { LocalParseError } from './errors.js';

/**
 * Parser directives: `# syntax=…`, `# escape=…`, `# check=…` comments at the
 * very top of a Dockerfile (before any instruction, blank line or other
 * comment), case-insensitive names, each at most once.
 */
export type DirectiveName = 'syntax' | 'escape' | 'check';

export interface Directive {
  name: DirectiveName;
  value: string;
  /** 1-based line of the directive. */
  line: number;
}

const VALID = new Set<string>(['syntax', 'escape', 'check']);
// Go RE2's \s is [\t\n\f\r ].
const DIRECTIVE_RE = /^([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$/;
const LEADING_SPACE_RE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

/**
 * Reads directives line by line; stops for good at the first line that is not
 * a directive. A repeated directive is an error.
 */
export class DirectiveParser {
  private line: number;
  private done = false;
  private readonly seen = new Set<string>();

  constructor(
    private readonly commentPrefix = '#',
    startLine = 0,
  ) {
    this.line = startLine;
  }

  get finished(): boolean {
    return this.done;
  }

  /** `line` without its newline. Returns the directive on it, if any. */
  parseLine(line: string): Directive | undefined {
    this.line++;
    if (this.done) return undefined;
    if (!line.startsWith(this.commentPrefix)) {
      this.done = true;
      return undefined;
    }
    const body = line.slice(this.commentPrefix.length).replace(LEADING_SPACE_RE, '');
    const m = DIRECTIVE_RE.exec(body);
    if (!m) {
      this.done = true;
      return undefined;
    }
    const name = m[1].toLowerCase();
    if (!VALID.has(name)) {
      this.done = true;
      return undefined;
    }
    if (this.seen.has(name)) throw new LocalParseError(`only one ${name} parser directive can be used`);
    this.seen.add(name);
    return { name: name as DirectiveName, value: m[2], line: this.line };
  }
}

/**
 * All directives at the top of `text`, skipping a leading BOM and a `#!`
 * shebang line (as BuildKit's ParseDirective). Never throws: a repeated
 * directive ends the scan (the main parser reports it).
 */
export function parseDirectives(text: string): Directive[] {
  let body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  let startLine = 0;
  const firstNl = body.indexOf('\n');
  const firstLine = firstNl < 0 ? body : body.slice(0, firstNl);
  if (firstLine.startsWith('#!')) {
    body = firstNl < 0 ? '' : body.slice(firstNl + 1);
    startLine = 1;
  }
  const parser = new DirectiveParser('#', startLine);
  const out: Directive[] = [];
  for (const raw of body.split('\n')) {
    if (parser.finished) break;
    try {
      const d = parser.parseLine(raw.replace(/\r$/, ''));
      if (d) out.push(d);
    } catch {
      break;
    }
  }
  return out;
}

/** What `# check=skip=A,B;error=true;experimental=C` asks of the linter. */
export interface CheckConfig {
  skipAll: boolean;
  skip: string[];
  experimentalAll: boolean;
  experimental: string[];
  /** Turn warnings into a build error. */
  error: boolean;
}

/** Parses the value of a `check` directive (or of the BUILDKIT_DOCKERFILE_CHECK build arg). */
export function parseCheckConfig(value: string): CheckConfig {
  const config: CheckConfig = { skipAll: false, skip: [], experimentalAll: false, experimental: [], error: false };
  const str = value.trim();
  if (str === '') return config;
  for (const part of splitN(str, ';', 3)) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new LocalParseError(`invalid check option "${part}"`);
    const key = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    switch (key) {
      case 'skip':
        if (v === 'all') config.skipAll = true;
        else config.skip = v.split(',').map((r) => r.trim());
        break;
      case 'experimental':
        if (v === 'all') config.experimentalAll = true;
        else config.experimental = v.split(',').map((r) => r.trim());
        break;
      case 'error': {
        const b = parseGoBool(v);
        if (b === undefined) throw new LocalParseError(`failed to parse check option "${part}": invalid syntax`);
        config.error = b;
        break;
      }
      default:
        throw new LocalParseError(`invalid check option "${key}"`);
    }
  }
  return config;
}

/** Go's strconv.ParseBool. */
export function parseGoBool(s: string): boolean | undefined {
  switch (s) {
    case '1': case 't': case 'T': case 'true': case 'TRUE': case 'True':
      return true;
    case '0': case 'f': case 'F': case 'false': case 'FALSE': case 'False':
      return false;
    default:
      return undefined;
  }
}

/** Go's strings.SplitN. */
export function splitN(s: string, sep: string, n: number): string[] {
  const out: string[] = [];
  let rest = s;
  while (out.length < n - 1) {
    const i = rest.indexOf(sep);
    if (i < 0) break;
    out.push(rest.slice(0, i));
    rest = rest.slice(i + sep.length);
  }
  out.push(rest);
  return out;
}
