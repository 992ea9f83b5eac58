import type { ProgressEvent } from '@bkt/core';
import { stepError } from './report.js';
import { terminalSafe } from './terminal-safe.js';
import { ProgressTrace, asShown, isCanceled, seconds, type VertexState } from './trace.js';

/** A progress display: receives events, and finishes its output on `close()`. */
export interface ProgressDisplay {
  /** The mode it displays in (`auto` resolved). */
  readonly mode: DisplayMode;
  readonly trace: ProgressTrace;
  write(event: ProgressEvent): void;
  close(): void;
}

export const PROGRESS_MODES = ['auto', 'tty', 'plain', 'rawjson', 'quiet'] as const;
export type ProgressMode = (typeof PROGRESS_MODES)[number];
export type DisplayMode = Exclude<ProgressMode, 'auto'>;

export interface DisplayOptions {
  /** Colours in tty mode (default true; `NO_COLOR` turns them off). */
  color?: boolean;
  /** Debug output: step errors keep their op digests. */
  debug?: boolean;
}

export interface Output {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}

/** Picks the display for a `--progress` mode; `auto` is `tty` when `out` is a terminal, else `plain`. */
export function createDisplay(mode: ProgressMode, out: Output, options: DisplayOptions = {}): ProgressDisplay {
  const resolved = mode === 'auto' ? (out.isTTY ? 'tty' : 'plain') : mode;
  switch (resolved) {
    case 'tty':
      return new TtyDisplay(out, options);
    case 'plain':
      return new PlainDisplay(out, options);
    case 'rawjson':
      return new RawJsonDisplay(out);
    case 'quiet':
      return new QuietDisplay();
  }
}

class QuietDisplay implements ProgressDisplay {
  readonly mode = 'quiet';
  readonly trace = new ProgressTrace();
  write(event: ProgressEvent): void {
    this.trace.apply(event);
  }
  close(): void {}
}

/**
 * One JSON object per event, shaped like control.proto's `StatusResponse`
 * as `buildctl --progress rawjson` prints it: `{"vertexes":[…]}`,
 * `{"statuses":[…]}`, `{"logs":[…]}` (data base64) or `{"warnings":[…]}`.
 */
export class RawJsonDisplay implements ProgressDisplay {
  readonly mode = 'rawjson';
  readonly trace = new ProgressTrace();
  constructor(private readonly out: Output) {}

  write(event: ProgressEvent): void {
    this.trace.apply(event);
    let obj: unknown;
    switch (event.type) {
      case 'vertex':
        obj = { vertexes: [event.vertex] };
        break;
      case 'status':
        obj = { statuses: [event.status] };
        break;
      case 'log': {
        const { msg, ...rest } = event.log;
        obj = { logs: [{ ...rest, data: Buffer.from(msg).toString('base64') }] };
        break;
      }
      case 'warning':
        obj = { warnings: [event.warning] };
        break;
    }
    this.out.write(JSON.stringify(obj) + '\n');
  }
  close(): void {}
}

/**
 * BuildKit's plain output: `#N name` when a step starts (or, when another
 * step is printing, with its first line), its output lines as
 * `#N 0.123 line`, sub-progress as `#N id current/total`, then `#N CACHED`,
 * `#N DONE 0.1s`, `#N ERROR: message` or `#N CANCELED`, and its warnings as
 * `#N WARN: short` (also after it finished). A step interrupted by another's
 * lines gets `#N ...` and its header again when it resumes.
 */
export class PlainDisplay implements ProgressDisplay {
  readonly mode = 'plain';
  readonly trace = new ProgressTrace();
  private current: VertexState | undefined;
  private readonly printed = new Set<VertexState>();
  private readonly finished = new Set<VertexState>();

  constructor(
    private readonly out: Output,
    private readonly options: DisplayOptions = {},
  ) {}

  write(event: ProgressEvent): void {
    const v = this.trace.apply(event);
    // A finished step prints nothing more of its state; late output lines and warnings still show.
    if (this.finished.has(v) && event.type !== 'log' && event.type !== 'warning') return;
    switch (event.type) {
      case 'vertex': {
        if (!v.started && !v.completed && !v.cached) return;
        if (!v.completed && !v.error && !v.cached) {
          // A step that starts while another one is printing shows up with its first line.
          if (!this.current || this.finished.has(this.current)) this.focus(v);
          return;
        }
        this.focus(v);
        if (v.completed || v.error) {
          if (v.partialLine) this.line(v, `${this.elapsed(v)} ${asShown(v.partialLine)}`);
          if (v.error) this.line(v, isCanceled(v) ? 'CANCELED' : `ERROR: ${stepError(v, !!this.options.debug).split('\n')[0]}`);
          else if (v.cached) this.line(v, 'CACHED');
          else this.line(v, `DONE ${seconds(v.started, v.completed)}`);
          this.finished.add(v);
          this.current = undefined;
        } else if (v.cached) {
          this.line(v, 'CACHED');
          this.finished.add(v);
          this.current = undefined;
        }
        return;
      }
      case 'status': {
        const s = event.status;
        this.focus(v);
        const amount = s.total ? ` ${s.current}/${s.total}` : s.current ? ` ${s.current}` : '';
        this.line(v, `${s.id}${amount}${s.completed ? ' done' : ''}`);
        return;
      }
      case 'log': {
        if (v.newLogLines.length === 0) return;
        this.focus(v);
        for (const l of v.newLogLines) this.line(v, `${this.elapsed(v)} ${l}`);
        return;
      }
      case 'warning':
        this.focus(v);
        this.line(v, `WARN: ${event.warning.short}`);
        return;
    }
  }

  close(): void {}

  private focus(v: VertexState): void {
    if (this.current === v) return;
    // A step interrupted while running is marked; one that had finished (and printed a late warning) is not.
    if (this.current && !this.finished.has(this.current)) this.line(this.current, '...');
    if (this.printed.size > 0) this.out.write('\n');
    this.out.write(`#${v.index} ${terminalSafe(v.name)}\n`);
    this.printed.add(v);
    this.current = v;
  }

  /** Prints `text` (which may carry build output) as one line of step `v`. */
  private line(v: VertexState, text: string): void {
    this.out.write(`#${v.index} ${terminalSafe(text).replaceAll('\n', ' ')}\n`);
  }

  private elapsed(v: VertexState): string {
    const from = v.started ?? this.trace.startedAt;
    return ((Date.now() - from.getTime()) / 1000).toFixed(3);
  }
}

const ESC = '\x1b[';

/**
 * The terminal display: a live tree of the build's steps redrawn in place
 * (10 times a second): a header with the elapsed time and steps done, one
 * line per step with its time or CACHED / ERROR, and under a running step its
 * sub-progress and last output lines. Finished output stays on screen.
 */
export class TtyDisplay implements ProgressDisplay {
  readonly mode = 'tty';
  readonly trace = new ProgressTrace();
  private drawnLines = 0;
  private readonly timer: NodeJS.Timeout;
  private dirty = true;
  private readonly color: boolean;

  constructor(
    private readonly out: Output,
    options: DisplayOptions = {},
  ) {
    this.color = options.color ?? true;
    this.timer = setInterval(() => this.draw(false), 100);
    this.timer.unref();
  }

  write(event: ProgressEvent): void {
    this.trace.apply(event);
    this.dirty = true;
  }

  close(): void {
    clearInterval(this.timer);
    this.dirty = true;
    this.draw(true);
  }

  private draw(final: boolean): void {
    if (!this.dirty && final === false && !this.anyRunning()) return;
    this.dirty = false;
    const width = Math.max(40, (this.out.columns ?? 80) - 1);
    const now = new Date();
    const all = [...this.trace.vertices.values()].filter((v) => v.started || v.completed || v.cached);
    const done = all.filter((v) => v.completed || v.cached).length;
    const lines: string[] = [];
    const state = final ? 'Finished' : 'Building';
    lines.push(`[+] ${state} ${seconds(this.trace.startedAt, now)} (${done}/${all.length})`);
    for (const v of all) {
      const running = !v.completed && !v.cached;
      const canceled = isCanceled(v);
      const failed = !!v.error && !canceled;
      const label = v.cached ? `CACHED ${v.name}` : canceled ? `CANCELED ${v.name}` : failed ? `ERROR ${v.name}` : v.name;
      const time = v.cached ? '' : seconds(v.started, v.completed ?? now);
      const color = failed ? 31 : canceled ? 33 : v.cached ? 34 : running ? 0 : 36;
      lines.push(fit(` => ${label}`, time, width, this.color ? color : 0));
      if (running || failed) {
        for (const s of v.statuses.values()) {
          const amount = s.total ? `${s.current}/${s.total}` : s.current ? String(s.current) : '';
          lines.push(fit(` => => ${s.id} ${amount}`, s.completed ? 'done' : '', width, 0));
        }
        for (const l of this.trace.lastLines(v, failed ? 10 : 6)) lines.push(fit(` => => # ${l}`, '', width, this.color ? 90 : 0));
      }
    }
    // A frame taller than the terminal could not be redrawn in place: keep the header and the latest lines.
    const rows = this.out.rows ?? 0;
    if (!final && rows > 2 && lines.length > rows - 1) lines.splice(1, lines.length - (rows - 1));
    let text = this.drawnLines > 0 ? `${ESC}${this.drawnLines}A` : '';
    for (const l of lines) text += `${ESC}2K${l}\n`;
    text += `${ESC}J`;
    this.out.write(text);
    this.drawnLines = lines.length;
  }

  private anyRunning(): boolean {
    for (const v of this.trace.vertices.values()) if (v.started && !v.completed && !v.cached) return true;
    return false;
  }
}

/** A line of exactly `width` columns: text left (made terminal-safe), `right` right-aligned, colored with SGR `color` (0: none). */
function fit(text: string, right: string, width: number, color: number): string {
  text = terminalSafe(text).replaceAll('\n', ' ');
  const room = width - right.length - 1;
  const left = text.length > room ? text.slice(0, Math.max(0, room - 3)) + '...' : text.padEnd(room);
  const line = `${left} ${right}`;
  return color ? `${ESC}${color}m${line}${ESC}0m` : line;
}
