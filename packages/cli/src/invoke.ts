/**
 * `bkt build --invoke CMD` and `bkt debug [--on=error|always] build …`: a
 * process in the build's result, or in the failed step's container as the
 * step left it (its root and writable mounts, its cwd, env and user),
 * attached to this terminal. Runs in the solve's `debug` callback, so the
 * build's snapshots stay alive until the process exits; leaving it releases
 * the container (no runc container, no mount left).
 */
import { PassThrough } from 'node:stream';
import { BktError, type ContainerProcess, type ContainerProcessSpec, type InteractiveContainer } from '@bkt/core';
import type { BuildDebugSession, DebugTarget } from '@bkt/solver';
import type { Io } from './commands/build.js';

/** What to run, and when: after a successful build (in its result), after a failed one (in the failed step). */
export interface InvokeConfig {
  /** Run in the result once the build succeeded. */
  onResult: boolean;
  /** Run in the failed step's container once the build failed. */
  onError: boolean;
  /** The command; default: the step's shell for a failed step, else `/bin/sh`. */
  args?: string[];
  /** Replaces the result's image entrypoint (buildx's `entrypoint=`): prepended to `args`. */
  entrypoint?: string[];
  /** Added to the step's / image's environment. */
  env: string[];
  user?: string;
  cwd?: string;
  /** Default: when stdin and stdout are terminals. */
  tty?: boolean;
}

/**
 * Parses `--invoke VALUE`, as buildx: `on-error` (a shell in the failed
 * step, only when the build fails), `default` or `debug-shell` (a shell in
 * the result), `KEY=VALUE,…` with keys `args` (a command line, split on
 * spaces), `entrypoint`, `env` (repeatable), `user`, `cwd`, `tty`
 * (true/false) and `on` (`error`, `always`), or else a command line run in
 * the result.
 */
export function parseInvoke(value: string): InvokeConfig {
  const v = value.trim();
  if (v === '') throw new BktError('INVALID_ARGUMENT', '--invoke: empty value (want a command, on-error, debug-shell or KEY=VALUE,…)', { attribute: 'invoke' });
  if (v === 'on-error') return { onResult: false, onError: true, env: [] };
  if (v === 'default' || v === 'debug-shell') return { onResult: true, onError: false, env: [] };
  if (!/^[a-z]+=/.test(v)) return { onResult: true, onError: false, args: splitCommand(v), env: [] };
  const cfg: InvokeConfig = { onResult: true, onError: false, env: [] };
  for (const field of v.split(',')) {
    const eq = field.indexOf('=');
    if (eq < 0) throw new BktError('INVALID_ARGUMENT', `--invoke: "${field}" is not KEY=VALUE`, { attribute: 'invoke' });
    const key = field.slice(0, eq).trim();
    const val = field.slice(eq + 1);
    switch (key) {
      case 'args':
        cfg.args = splitCommand(val);
        break;
      case 'entrypoint':
        cfg.entrypoint = splitCommand(val);
        break;
      case 'env':
        if (!val.includes('=')) throw new BktError('INVALID_ARGUMENT', `--invoke: env=${val} is not NAME=VALUE`, { attribute: 'invoke' });
        cfg.env.push(val);
        break;
      case 'user':
        cfg.user = val;
        break;
      case 'cwd':
        cfg.cwd = val;
        break;
      case 'tty':
        if (val !== 'true' && val !== 'false') throw new BktError('INVALID_ARGUMENT', `--invoke: tty=${val} (want true or false)`, { attribute: 'invoke' });
        cfg.tty = val === 'true';
        break;
      case 'on':
        if (val === 'error') Object.assign(cfg, { onResult: false, onError: true });
        else if (val === 'always') Object.assign(cfg, { onResult: true, onError: true });
        else throw new BktError('INVALID_ARGUMENT', `--invoke: on=${val} (want error or always)`, { attribute: 'invoke' });
        break;
      default:
        throw new BktError('INVALID_ARGUMENT', `--invoke: unknown key "${key}" (known: args, entrypoint, env, user, cwd, tty, on)`, { attribute: 'invoke' });
    }
  }
  return cfg;
}

function splitCommand(line: string): string[] {
  const args = line.trim().split(/\s+/).filter(Boolean);
  if (args.length === 0) throw new BktError('INVALID_ARGUMENT', '--invoke: empty command', { attribute: 'invoke' });
  return args;
}

/** `bkt debug --on WHEN`: `error` (default) opens a shell only in a failed step, `always` in the result too. */
export function debugConfig(on: string | undefined, invoke: string | undefined): InvokeConfig {
  const when = on ?? 'error';
  if (when !== 'error' && when !== 'always') throw new BktError('INVALID_ARGUMENT', `bkt debug --on ${when}: want error or always`, { attribute: 'on' });
  const cmd = invoke === undefined ? { env: [] as string[] } : parseInvoke(invoke);
  return { ...cmd, onResult: when === 'always', onError: true };
}

/** An `--invoke` / `bkt debug` for one build: what to run, this terminal, and what to do before it starts. */
export interface Invocation {
  config: InvokeConfig;
  io: Io;
  /** Called just before the process starts (the progress display ends; a failure is reported). */
  beforeRun(outcome: { error?: Error }): void;
  /** The build's `--secret` ids (through a daemon they cannot reach its Controller yet). */
  secretIds?: string[];
}

/** The solve's `debug` callback of an invocation (a build in this process). */
export function invokeCallback(inv: Invocation): (session: BuildDebugSession) => Promise<void> {
  const { config: cfg, io } = inv;
  return async (session) => {
    if (session.error ? !cfg.onError : !cfg.onResult) return;
    inv.beforeRun(session.error ? { error: session.error } : {});
    // The solver is loaded by the build that calls this; through a daemon, this module is loaded without it.
    const { debugTarget } = await import('@bkt/solver');
    const found = targetOf(debugTarget(session), session, cfg);
    if (typeof found === 'string') {
      io.stderr.write(`${found}\n`);
      return;
    }
    const { target, process } = found;
    const what = session.error ? 'bkt debug' : 'bkt --invoke';
    io.stderr.write(
      session.error
        ? `bkt debug: ${target.what} failed; running ${args(process)} in its container (as the step left it; exit to leave)\n`
        : `bkt: running ${args(process)} in the build result (exit to leave)\n`,
    );
    const container = await session.newContainer(target.request);
    try {
      const code = await attach(container, process, io, session.signal);
      io.stderr.write(`${what}: ${args(process)} exited with code ${code}; container released\n`);
    } finally {
      await container.release();
    }
  };
}

/** What runs: the solver's debug target with this invocation's command, env, user and cwd. */
function targetOf(target: DebugTarget | undefined, session: BuildDebugSession, cfg: InvokeConfig): { target: DebugTarget; process: ContainerProcessSpec } | string {
  if (!target) {
    return session.error
      ? 'bkt debug: the build failed before any RUN step did (no step container to open)'
      : 'bkt: --invoke: the build result is empty (scratch): nothing to run';
  }
  const d = target.process;
  const process: ContainerProcessSpec = {
    ...d,
    args: [...(cfg.entrypoint ?? []), ...(cfg.args ?? d.args)],
    env: [...(d.env ?? []), ...cfg.env],
    ...(cfg.cwd !== undefined ? { cwd: cfg.cwd } : {}),
    ...(cfg.user !== undefined ? { user: cfg.user } : {}),
    ...(cfg.tty !== undefined ? { tty: cfg.tty } : {}),
  };
  return { target, process };
}

function args(p: ContainerProcessSpec): string {
  return p.args.join(' ');
}

type TtyIn = NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?(raw: boolean): unknown };
type TtyOut = Io['stdout'] & { on?(event: 'resize', l: () => void): unknown; off?(event: 'resize', l: () => void): unknown };

/** This process's terminal lent to a container's process: raw mode, its size and resizes, its input. */
export interface LentTerminal {
  readonly tty: boolean;
  size(): { rows: number; cols: number };
  /** Stops following input and resizes, restores the terminal's mode. */
  restore(): void;
}

/**
 * Lends `io`'s terminal: with a tty (default: when stdin and stdout are
 * terminals) raw mode; `onInput` gets stdin's bytes (and `null` at its
 * end), `onResize` the new size.
 */
export function lendTerminal(io: Io, tty: boolean | undefined, onInput: (d: Buffer | null) => void, onResize: (size: { rows: number; cols: number }) => void): LentTerminal {
  const stdin = io.stdin as TtyIn;
  const stdout = io.stdout as TtyOut;
  const isTty = tty ?? (!!stdin.isTTY && !!stdout.isTTY);
  const size = () => ({ rows: stdout.rows || 24, cols: stdout.columns || 80 });
  const onData = (d: Buffer) => onInput(Buffer.from(d));
  const onEnd = () => onInput(null);
  const resized = () => onResize(size());
  stdin.on('data', onData);
  stdin.on('end', onEnd);
  if (isTty) {
    stdin.setRawMode?.(true);
    stdout.on?.('resize', resized);
  }
  stdin.resume();
  let restored = false;
  return {
    tty: isTty,
    size,
    restore: () => {
      if (restored) return;
      restored = true;
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      if (isTty) {
        stdout.off?.('resize', resized);
        stdin.setRawMode?.(false);
      }
      stdin.pause();
    },
  };
}

/** Writes container output (bytes) to one of the CLI's outputs. */
export function writeBytes(out: Io['stdout']): (d: Uint8Array) => void {
  return (d) => out.write(Buffer.from(d) as unknown as string);
}

/** Runs `spec` as the container's process with this terminal; resolves with its exit code. */
async function attach(container: InteractiveContainer, spec: ContainerProcessSpec, io: Io, signal: AbortSignal): Promise<number> {
  const input = new PassThrough();
  let proc: ContainerProcess | undefined;
  const term = lendTerminal(
    io,
    spec.tty,
    (d) => (d ? input.write(d) : input.end()),
    (size) => void proc?.resize(size).catch(() => undefined),
  );
  try {
    proc = await container.start(
      { ...spec, tty: term.tty, ...(term.tty ? { size: term.size() } : {}) },
      { stdin: input, stdout: writeBytes(io.stdout), stderr: writeBytes(io.stderr) },
    );
    const cancelled = new Promise<never>((_, reject) => {
      const stop = () => reject(new BktError('CANCELLED', 'the debug session was cancelled'));
      if (signal.aborted) stop();
      else signal.addEventListener('abort', stop, { once: true });
    });
    cancelled.catch(() => undefined);
    return await Promise.race([proc.wait(), cancelled]);
  } finally {
    term.restore();
    input.end();
  }
}
