/**
 * `frontend.lint` (what `--call=check` asks): the build-check warnings of a
 * conversion as BuildKit's `lint.LintResults`, printed as BuildKit's
 * `PrintLintViolations` (each warning: `WARNING: Rule - url`, its message,
 * then its Dockerfile lines), in line order.
 */
import type { LintWarning } from '../parser/rules.js';
import { sourceLocation, type SourceLocation } from './results.js';
import { sourceSnippet } from './text.js';

export interface LintResultWarning {
  ruleName: string;
  description?: string;
  url?: string;
  detail?: string;
  location?: SourceLocation;
}

/** BuildKit's `lint.LintResults`. */
export interface LintResults {
  warnings: LintResultWarning[];
  sources: { filename: string; language: string; data: string }[];
}

export function lintResults(warnings: readonly LintWarning[], filename: string, text: string): LintResults {
  const sorted = [...warnings].sort((a, b) => a.range.startLine - b.range.startLine);
  return {
    warnings: sorted.map((w) => ({
      ruleName: w.rule,
      description: w.description,
      url: w.url,
      detail: w.message,
      location: sourceLocation(w.range.startLine, w.range.endLine),
    })),
    sources: [{ filename, language: 'Dockerfile', data: Buffer.from(text).toString('base64') }],
  };
}

export function printLintResults(results: LintResults): string {
  let out = '';
  for (const w of results.warnings) {
    out += `\nWARNING: ${w.ruleName}${w.url ? ` - ${w.url}` : ''}\n${w.detail ?? ''}\n`;
    const source = w.location ? results.sources[w.location.sourceIndex] : undefined;
    if (!source || !w.location) continue;
    const ranges = w.location.ranges.map((r) => ({ start: r.start.line, end: r.end.line }));
    out += sourceSnippet(source.filename, Buffer.from(source.data, 'base64').toString('utf8'), ranges);
  }
  return out;
}
