import type { Digest, ProgressEvent, VertexEvent, VertexStatusEvent, VertexWarningEvent } from '@bkt/core';

/** What the displays know of one vertex: its latest state, sub-progress and output. */
export interface VertexState extends VertexEvent {
  /** 1-based number in order of first appearance (`#1`, `#2`, … in plain output). */
  index: number;
  statuses: Map<string, VertexStatusEvent>;
  /** Complete output lines, oldest first (bounded to the last `MAX_LOG_LINES`). */
  logLines: string[];
  /** An unterminated last line of output. */
  partialLine: string;
  /** How many complete lines were ever appended (`logLines` keeps only the last ones). */
  totalLogLines: number;
  /** The complete lines the latest log event ended (all of them, however many; `logLines` may keep fewer). */
  newLogLines: string[];
  warnings: VertexWarningEvent[];
}

const MAX_LOG_LINES = 200;

/**
 * Accumulates progress events into per-vertex state, shared by every display
 * mode and by the error report (a failed step's name and last output lines).
 */
export class ProgressTrace {
  readonly vertices = new Map<Digest, VertexState>();
  readonly startedAt = new Date();
  /** Every warning of the build, in the order it arrived. */
  readonly warnings: VertexWarningEvent[] = [];

  /** Applies an event; returns the vertex it concerns. */
  apply(event: ProgressEvent): VertexState {
    switch (event.type) {
      case 'vertex': {
        const v = this.vertex(event.vertex.digest);
        const { digest, inputs, name, cached, started, completed, error, progressGroup } = event.vertex;
        Object.assign(v, { digest, inputs, name, cached, started: started ?? v.started, completed, error, progressGroup });
        return v;
      }
      case 'status': {
        const v = this.vertex(event.status.vertex);
        v.statuses.set(event.status.id, event.status);
        return v;
      }
      case 'log': {
        const v = this.vertex(event.log.vertex);
        const text = v.partialLine + Buffer.from(event.log.msg).toString('utf8');
        const raw = text.split('\n');
        v.partialLine = raw.pop() ?? '';
        const lines = raw.map(asShown);
        v.newLogLines = lines;
        v.logLines.push(...lines);
        v.totalLogLines += lines.length;
        if (v.logLines.length > MAX_LOG_LINES) v.logLines.splice(0, v.logLines.length - MAX_LOG_LINES);
        return v;
      }
      case 'warning': {
        const v = this.vertex(event.warning.vertex);
        v.warnings.push(event.warning);
        this.warnings.push(event.warning);
        return v;
      }
    }
  }

  private vertex(digest: Digest): VertexState {
    let v = this.vertices.get(digest);
    if (!v) {
      v = {
        digest,
        inputs: [],
        name: digest,
        cached: false,
        index: this.vertices.size + 1,
        statuses: new Map(),
        logLines: [],
        newLogLines: [],
        partialLine: '',
        totalLogLines: 0,
        warnings: [],
      };
      this.vertices.set(digest, v);
    }
    return v;
  }

  /** Vertices that failed with their own error (not CANCELED), in order of appearance. */
  failed(): VertexState[] {
    return [...this.vertices.values()].filter((v) => v.error && !isCanceled(v));
  }

  /** The last `n` lines of a vertex's output (including an unterminated one). */
  lastLines(v: VertexState, n: number): string[] {
    const all = v.partialLine ? [...v.logLines, asShown(v.partialLine)] : v.logLines;
    return all.slice(-n);
  }
}

/**
 * Whether a step was stopped because its build failed elsewhere or was
 * cancelled: its error ends with BuildKit's `context canceled`, shown as
 * CANCELED.
 */
export function isCanceled(v: Pick<VertexEvent, 'error'>): boolean {
  return v.error !== undefined && v.error.endsWith('context canceled');
}

/**
 * An output line as a terminal leaves it: a carriage return moves back to the
 * line's start, so what shows is the text after the last one that has any (a
 * progress bar's final state; `\r\n` line ends lose their `\r`).
 */
export function asShown(line: string): string {
  if (!line.includes('\r')) return line;
  return line.split('\r').filter((s) => s !== '').at(-1) ?? '';
}

/** Seconds between two dates with one decimal, as BuildKit prints step times. */
export function seconds(from: Date | undefined, to: Date | undefined): string {
  if (!from || !to) return '0.0s';
  return `${(Math.max(0, to.getTime() - from.getTime()) / 1000).toFixed(1)}s`;
}
