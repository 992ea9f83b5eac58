import { BktError } from '@bkt/core';

/** A 1-based line range of a Dockerfile (both ends inclusive). */
export interface SourceRange {
  startLine: number;
  endLine: number;
}

/** Where a parse error is: 1-based line and column. */
export interface ErrorLocation {
  file: string;
  line: number;
  column: number;
  endLine?: number;
}

/**
 * A Dockerfile that cannot be parsed or expanded. `message` is
 * `FILE:LINE:COL: <problem>` followed by the offending source line, the way a
 * compiler reports it; `problem` is the bare description.
 */
export class DockerfileParseError extends BktError {
  readonly problem: string;

  constructor(problem: string, where: ErrorLocation, sourceLine?: string, options?: { cause?: unknown }) {
    super('INVALID_ARGUMENT', formatMessage(problem, where, sourceLine), {
      file: where.file,
      line: where.line,
      column: where.column,
      ...(where.endLine !== undefined && where.endLine !== where.line ? { endLine: where.endLine } : {}),
    }, options);
    this.name = 'DockerfileParseError';
    this.problem = problem;
  }
}

function formatMessage(problem: string, where: ErrorLocation, sourceLine?: string): string {
  const head = `${where.file}:${where.line}:${where.column}: ${problem}`;
  if (sourceLine === undefined) return head;
  return `${head}\n${String(where.line).padStart(4)} | ${sourceLine.replace(/\r?\n$/, '')}`;
}

/**
 * An error raised below the Dockerfile level (shell lexer, flag parser, mount
 * parser) that does not know its file position yet. The parser turns it into
 * a DockerfileParseError; `token` (when set) is searched in the source line to
 * point the column at it.
 */
export class LocalParseError extends BktError {
  readonly token?: string;
  constructor(message: string, token?: string) {
    super('INVALID_ARGUMENT', message);
    this.name = 'LocalParseError';
    this.token = token;
  }
}

/**
 * An error at an instruction: the line and column of `token` when it appears
 * in the instruction's lines, else the instruction's first non-blank column.
 */
export function locatedError(problem: string, file: string, lines: readonly string[], range: SourceRange, token?: string): DockerfileParseError {
  const start = Math.max(1, range.startLine);
  const end = Math.max(start, range.endLine);
  if (token) {
    for (let n = start; n <= end && n <= lines.length; n++) {
      const col = lines[n - 1].indexOf(token);
      if (col >= 0) return new DockerfileParseError(problem, { file, line: n, column: col + 1, endLine: end }, lines[n - 1]);
    }
  }
  const text = lines[start - 1];
  const column = text === undefined ? 1 : Math.max(1, text.search(/\S/) + 1);
  return new DockerfileParseError(problem, { file, line: start, column, endLine: end }, text);
}
