/**
 * Text that comes from the build — step names made from Dockerfile text, RUN
 * output, error messages — made safe to print on a terminal. A control
 * character other than tab and newline is shown in caret notation (ESC as
 * `^[`, BEL as `^G`, DEL as `^?`) and a C1 control as `<U+009B>`, so no byte
 * of the build can move the cursor, recolour or clear the screen, set the
 * window title or reach the clipboard. (Output lines reach here without
 * carriage returns: see `ProgressTrace`.) The rawjson display keeps the
 * bytes as they were.
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]/g;

export function terminalSafe(text: string): string {
  return text.split('\n').map(safeLine).join('\n');
}

function safeLine(line: string): string {
  return line.replace(CONTROL, (c) => {
    const code = c.charCodeAt(0);
    if (code < 0x20) return `^${String.fromCharCode(code + 0x40)}`;
    if (code === 0x7f) return '^?';
    return `<U+${code.toString(16).toUpperCase().padStart(4, '0')}>`;
  });
}
