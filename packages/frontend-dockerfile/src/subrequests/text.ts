/**
 * Text layout shared by the subrequests' `result.txt`: Go's tabwriter as
 * BuildKit's printers use it, and a source snippet as BuildKit's
 * `errdefs.Source.Print` writes it.
 */

/**
 * Rows laid out as Go's `tabwriter` (padding `padding`, pad char space):
 * every cell but a row's last is padded to its column's widest cell plus
 * `padding`; the last cell is written as it is.
 */
export function table(rows: readonly string[][], padding: number): string {
  const widths: number[] = [];
  for (const row of rows) row.slice(0, -1).forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, [...cell].length)));
  return rows.map((row) => row.map((cell, i) => (i < row.length - 1 ? cell + ' '.repeat(widths[i]! + padding - [...cell].length) : cell)).join('') + '\n').join('');
}

/** A 1-based, inclusive line range. */
export interface LineRange {
  start: number;
  end: number;
}

/**
 * The lines of `ranges` with context, as BuildKit prints a source location:
 * `FILE:LINE`, a ruler, each line as ` %3d | >>> text` (`>>>` marks the
 * lines in a range), a ruler. Empty when the range is outside the text.
 */
export function sourceSnippet(filename: string, text: string, ranges: readonly LineRange[]): string {
  if (ranges.length === 0) return '';
  const lines = text.split('\n');
  let start = Math.min(...ranges.map((r) => r.start));
  let end = Math.max(...ranges.map((r) => r.end));
  if (start > lines.length || start < 1) return '';
  if (end > lines.length) end = lines.length;
  const pad = end === start ? 4 : 2;
  const first = start;
  for (let p = 0; p < pad; p++) {
    if (start > 1) {
      start--;
      p++;
    }
    if (end !== lines.length) {
      end++;
      p++;
    }
  }
  const ruler = '--------------------\n';
  let out = `${filename}:${first}\n${ruler}`;
  for (let i = start; i <= end; i++) {
    const marked = ranges.some((r) => r.start <= i && i <= r.end);
    out += ` ${String(i).padStart(3)} | ${marked ? '>>>' : '   '} ${lines[i - 1]}\n`;
  }
  return out + ruler;
}
