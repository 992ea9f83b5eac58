/**
 * What `bkt history logs` prints of a build's recorded progress, streamed
 * (the build's 50 MB step is never held in memory):
 *
 * - the whole build as `--progress plain` prints it (`#N name`, `#N 0.123
 *   line`, `#N DONE 0.1s`), times as recorded; a step's output past 2 MiB is
 *   clipped, as the live display clipped it, with the command printing all of it;
 * - `--step N|DIGEST`: that step only, all of its output;
 * - `--step … --raw`: that step's output exactly as it wrote it: its stdout
 *   on stdout and its stderr on stderr, byte for byte.
 */
import { StringDecoder } from 'node:string_decoder';
import { BktError, type ProgressEvent } from '@bkt/core';
import { terminalSafe } from '../progress/terminal-safe.js';
import { asShown } from '../progress/trace.js';
import type { Io } from './build.js';
import type { StepSummary } from './history.js';

export interface LogsOptions {
  /** `--step`: a step number (`3` or `#3`) or a (prefix of a) step digest. */
  step?: string;
  /** `--raw`: the step's output bytes only. */
  raw?: boolean;
}

/** A step's output the whole-build view shows, as the runc worker's display limit (BUILDKIT_STEP_LOG_MAX_SIZE). */
const VIEW_LIMIT = 2 * 1024 * 1024;
/** A line longer than this is printed in pieces. */
const MAX_LINE = 64 * 1024;
/** Text collected before it is written. */
const FLUSH_AT = 64 * 1024;

export async function printLogs(ref: string, steps: StepSummary[], events: AsyncIterable<ProgressEvent>, opts: LogsOptions, io: Io): Promise<void> {
  const only = opts.step !== undefined ? pickStep(steps, opts.step, ref) : undefined;
  const out = new Sink(io.stdout);
  const err = new Sink(io.stderr);
  if (opts.raw) {
    for await (const e of events) {
      if (e.type !== 'log' || e.log.vertex !== only!.digest) continue;
      await (e.log.stream === 2 ? err : out).bytes(e.log.msg);
      if (out.closed) return;
    }
    return;
  }
  const view = new PlainView(ref, steps, out, only?.digest);
  for await (const e of events) {
    view.apply(e);
    if (out.pending > FLUSH_AT) await out.flush();
    if (out.closed) return;
  }
  view.end();
  await out.flush();
}

/** The step `--step` names: its number (`3`, `#3`) or a unique prefix of its digest (with or without `sha256:`). */
export function pickStep(steps: StepSummary[], wanted: string, ref: string): StepSummary {
  const bad = (why: string) => new BktError('INVALID_ARGUMENT', `--step ${wanted}: ${why}`, { attribute: 'step' });
  const n = /^#?(\d+)$/.exec(wanted)?.[1];
  if (n !== undefined) {
    const step = steps[Number(n) - 1];
    if (!step) throw bad(steps.length === 0 ? `build ${ref} recorded no steps` : `build ${ref} has steps #1 to #${steps.length}`);
    return step;
  }
  const hex = wanted.replace(/^sha256:/, '');
  if (!/^[0-9a-f]+$/.test(hex)) throw bad('expected a step number (as bkt history inspect lists them) or a step digest');
  const matches = steps.filter((s) => s.digest.replace(/^sha256:/, '').startsWith(hex));
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) throw bad(`matches steps ${matches.map((s) => `#${s.index}`).join(', ')}; give more of the digest`);
  throw bad(`no step of build ${ref} has that digest (bkt history inspect ${ref} lists them)`);
}

interface StepState {
  step: StepSummary;
  started?: Date;
  /** Per stream, its decoder, unterminated last line and the time of its last output. */
  streams: Map<number, { decoder: StringDecoder; partial: string; time: string }>;
  /** Output bytes seen (for the view's clipping). */
  bytes: number;
  clipped: boolean;
  done: boolean;
}

/** BuildKit's plain progress replayed from recorded events (as the CLI's plain display prints them live). */
class PlainView {
  readonly #states = new Map<string, StepState>();
  readonly #numbers: Map<string, StepSummary>;
  #current: StepState | undefined;
  #printed = false;

  constructor(
    private readonly ref: string,
    steps: StepSummary[],
    private readonly out: Sink,
    /** Only this step's events, all of its output. */
    private readonly only: string | undefined,
  ) {
    this.#numbers = new Map(steps.map((s) => [s.digest, s]));
  }

  apply(e: ProgressEvent): void {
    const digest = e.type === 'vertex' ? e.vertex.digest : e.type === 'status' ? e.status.vertex : e.type === 'log' ? e.log.vertex : e.warning.vertex;
    if (this.only !== undefined && digest !== this.only) return;
    const s = this.#state(digest);
    switch (e.type) {
      case 'vertex': {
        const v = e.vertex;
        s.started = v.started ?? s.started;
        if (!v.completed && !v.error && !v.cached) return;
        this.#endLine(s);
        if (v.error) this.#line(s, v.error.endsWith('context canceled') ? 'CANCELED' : `ERROR: ${v.error.split('\n')[0]}`);
        else if (v.cached) this.#line(s, 'CACHED');
        else this.#line(s, `DONE ${((Math.max(0, (v.completed?.getTime() ?? 0) - (s.started?.getTime() ?? 0))) / 1000).toFixed(1)}s`);
        s.done = true;
        this.#current = undefined;
        return;
      }
      case 'status': {
        const st = e.status;
        const amount = st.total ? ` ${st.current}/${st.total}` : st.current ? ` ${st.current}` : '';
        this.#line(s, `${st.id}${amount}${st.completed ? ' done' : ''}`);
        return;
      }
      case 'log':
        return this.#log(s, e.log.stream, e.log.msg, e.log.timestamp);
      case 'warning':
        this.#line(s, `WARN: ${e.warning.short}`);
        for (const d of e.warning.detail) this.#line(s, `WARN: ${d}`);
        return;
    }
  }

  /** Prints what is left of unterminated lines. */
  end(): void {
    for (const s of this.#states.values()) this.#endLine(s);
  }

  #log(s: StepState, stream: number, msg: Uint8Array, at: Date): void {
    if (s.clipped) return;
    let bytes = msg;
    if (this.only === undefined && s.bytes + msg.length > VIEW_LIMIT) {
      bytes = msg.subarray(0, VIEW_LIMIT - s.bytes);
      s.clipped = true;
    }
    s.bytes += bytes.length;
    let out = s.streams.get(stream);
    if (!out) s.streams.set(stream, (out = { decoder: new StringDecoder('utf8'), partial: '', time: '' }));
    const lines = (out.partial + out.decoder.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length))).split('\n');
    out.partial = lines.pop() ?? '';
    const time = (out.time = ((at.getTime() - (s.started ?? at).getTime()) / 1000).toFixed(3));
    for (const l of lines) this.#line(s, `${time} ${asShown(l)}`);
    while (out.partial.length > MAX_LINE) {
      this.#line(s, `${time} ${out.partial.slice(0, MAX_LINE)}`);
      out.partial = out.partial.slice(MAX_LINE);
    }
    if (s.clipped) {
      this.#endLine(s);
      this.#line(s, `[output clipped, log limit 2MiB reached: all of it with bkt history logs ${this.ref} --step ${s.step.index} (--raw for its exact bytes)]`);
    }
  }

  /** Prints the step's unterminated lines. */
  #endLine(s: StepState): void {
    for (const out of s.streams.values()) {
      const partial = out.partial + out.decoder.end();
      out.partial = '';
      if (partial !== '') this.#line(s, `${out.time} ${asShown(partial)}`);
    }
  }

  /** One line of step `s`, with its header first when another step printed last (and `...` for that one, as BuildKit). */
  #line(s: StepState, text: string): void {
    if (this.#current !== s) {
      if (this.#current && !this.#current.done) this.out.text(`#${this.#current.step.index} ...\n`);
      if (this.#printed) this.out.text('\n');
      this.out.text(`#${s.step.index} ${terminalSafe(s.step.name)}\n`);
      this.#printed = true;
      this.#current = s;
    }
    this.out.text(`#${s.step.index} ${terminalSafe(text).replaceAll('\n', ' ')}\n`);
  }

  #state(digest: string): StepState {
    let s = this.#states.get(digest);
    if (!s) {
      const step = this.#numbers.get(digest) ?? { index: this.#numbers.size + 1, digest, name: digest, cached: false };
      this.#numbers.set(digest, step);
      this.#states.set(digest, (s = { step, streams: new Map(), bytes: 0, clipped: false, done: false }));
    }
    return s;
  }
}

type Writable = Io['stdout'] & {
  write(chunk: string | Uint8Array): unknown;
  once?(event: 'drain' | 'error', listener: () => void): unknown;
  off?(event: 'drain' | 'error', listener: () => void): unknown;
  on?(event: 'error', listener: (err: Error) => void): unknown;
};

/**
 * An output written with backpressure (waits for `drain`). A reader that
 * went away (`bkt history logs | head`: EPIPE) closes it quietly.
 */
class Sink {
  #text: string[] = [];
  #pending = 0;
  #closed = false;

  constructor(private readonly out: Io['stdout']) {
    (out as Writable).on?.('error', () => {
      this.#closed = true;
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  get pending(): number {
    return this.#pending;
  }

  text(s: string): void {
    this.#text.push(s);
    this.#pending += s.length;
  }

  async flush(): Promise<void> {
    if (this.#text.length === 0) return;
    const s = this.#text.join('');
    this.#text = [];
    this.#pending = 0;
    await this.#write(s);
  }

  async bytes(b: Uint8Array): Promise<void> {
    await this.flush();
    await this.#write(b);
  }

  async #write(chunk: string | Uint8Array): Promise<void> {
    if (this.#closed) return;
    const out = this.out as Writable;
    if (out.write(chunk) === false && out.once) {
      await new Promise<void>((resolve) => {
        const done = () => {
          out.off?.('drain', done);
          out.off?.('error', done);
          resolve();
        };
        out.once!('drain', done);
        out.once!('error', done);
      });
    }
  }
}
