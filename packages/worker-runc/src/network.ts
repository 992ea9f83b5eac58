/**
 * Network namespaces for containers.
 *
 * - `sandbox` (NetMode UNSET): a namespace of its own, held by a small holder
 *   process (`unshare --net … cat`), connected to the outside by slirp4netns:
 *   a user-mode TCP/IP stack that runs in the host's namespace and gives the
 *   container `tap0` = 10.0.2.100/24, gateway 10.0.2.2 (which reaches the
 *   host's loopback), DNS 10.0.2.3. No bridge, no iptables, no veth: the
 *   container's traffic leaves as ordinary sockets of the slirp4netns process
 *   and cannot reach the host's network stack in any other way.
 * - `none`: a fresh namespace from runc, loopback only.
 * - `host`: the host's namespace (the caller checks the `network.host`
 *   entitlement).
 *
 * The holder and slirp4netns read a pipe from us and exit when it closes, so
 * nothing outlives the worker, even when it is killed; no mount is made.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { BktError } from '@bkt/core';
import type { NetworkMode } from './executor.js';

/** A network namespace prepared for one container. */
export interface NetworkNamespace {
  /** How the spec gets its network namespace. */
  readonly netns: 'new' | 'host' | { path: string };
  /** The /etc/resolv.conf the container sees. */
  readonly resolvConf: string;
  /** Stops helper processes; idempotent. */
  release(): Promise<void>;
}

export interface NetworkOptions {
  /** The slirp4netns binary (default: found on PATH). */
  slirp4netns?: string;
  /** Let the sandbox reach the host's loopback at 10.0.2.2 (default true). */
  hostLoopback?: boolean;
  /** MTU of tap0 (default 65520, slirp4netns's fastest). */
  mtu?: number;
}

/** The slirp4netns DNS forwarder's address inside the sandbox. */
export const SANDBOX_DNS = '10.0.2.3';
/** The host, as the sandbox reaches it. */
export const SANDBOX_HOST_GATEWAY = '10.0.2.2';

/**
 * Hands out network namespaces. One sandbox namespace is kept ready ahead of
 * need (made while the previous step runs), so a step does not wait for
 * unshare and slirp4netns to start; a namespace is never reused.
 */
export class NetworkProvider {
  readonly #opts: NetworkOptions;
  #spare: Promise<SandboxNamespace> | undefined;
  #closed = false;

  constructor(opts: NetworkOptions = {}) {
    this.#opts = opts;
  }

  async open(mode: NetworkMode): Promise<NetworkNamespace> {
    if (mode === 'host') {
      return { netns: 'host', resolvConf: hostResolvConf(), release: async () => {} };
    }
    if (mode === 'none') {
      return { netns: 'new', resolvConf: filteredResolvConf([]), release: async () => {} };
    }
    const spare = this.#spare;
    this.#spare = undefined;
    let ns = spare ? await spare.catch(() => undefined) : undefined;
    if (!ns || !ns.alive()) {
      await ns?.release();
      ns = await openSandbox(this.#opts);
    }
    if (!this.#closed) {
      this.#spare = openSandbox(this.#opts);
      this.#spare.catch(() => undefined);
    }
    return ns;
  }

  /** Stops the spare namespace; later `open`s make namespaces on demand. */
  async close(): Promise<void> {
    this.#closed = true;
    const spare = this.#spare;
    this.#spare = undefined;
    await (await spare?.catch(() => undefined))?.release();
  }
}

interface SandboxNamespace extends NetworkNamespace {
  /** False once the holder or slirp4netns has exited. */
  alive(): boolean;
}

async function openSandbox(opts: NetworkOptions): Promise<SandboxNamespace> {
  // The holder prints a line once it is in its new namespace, then waits on stdin.
  const holder = spawn('unshare', ['--net', '--', '/bin/sh', '-c', 'echo ready; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const children: ChildProcess[] = [holder];
  const release = async () => {
    for (const child of children.reverse()) await stopChild(child);
    children.length = 0;
  };
  try {
    await waitForOutput(holder, 'unshare --net', holder.stdout!);
    const args = ['--configure', `--mtu=${opts.mtu ?? 65520}`, '--ready-fd=3', '--exit-fd=4', '--enable-sandbox', '--enable-seccomp'];
    if (opts.hostLoopback === false) args.push('--disable-host-loopback');
    args.push(String(holder.pid), 'tap0');
    const slirp = spawn(opts.slirp4netns ?? 'slirp4netns', args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    children.push(slirp);
    await waitForOutput(slirp, 'slirp4netns', slirp.stdio[3] as NodeJS.ReadableStream);
  } catch (err) {
    await release();
    throw err;
  }
  const running = [...children];
  // A namespace waiting in the pool must not keep the process alive.
  for (const child of running) {
    child.unref();
    for (const stream of child.stdio) (stream as { unref?: () => void } | null)?.unref?.();
  }
  return {
    netns: { path: `/proc/${holder.pid}/ns/net` },
    resolvConf: filteredResolvConf([SANDBOX_DNS]),
    release,
    alive: () => running.every((c) => c.exitCode === null && c.signalCode === null),
  };
}

/** Resolves on the first byte from `stream`; rejects with the child's stderr if it exits first. */
function waitForOutput(child: ChildProcess, what: string, stream: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const onData = () => {
      cleanup();
      resolve();
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new BktError('INTERNAL', `${what} exited (${code}) before the sandbox network was ready: ${stderr.trim()}`));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new BktError('INTERNAL', `cannot start ${what}: ${err.message} (is it installed?)`, {}, { cause: err }));
    };
    const cleanup = () => {
      stream.off('data', onData);
      child.off('exit', onExit);
      child.off('error', onError);
    };
    stream.on('data', onData);
    child.on('exit', onExit);
    child.on('error', onError);
  });
}

/**
 * Closes the child's pipes (its cue to exit), then kills it if it has not exited within 200 ms; resolves once it
 * has exited. The child is ref'd again first (a pooled namespace's helpers are unref'd): this process stays alive
 * until the exit arrives, however long the helper takes.
 */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.ref();
  for (const s of child.stdio) (s as { ref?: () => void } | null)?.ref?.();
  for (const s of child.stdio) s?.destroy();
  const timer = setTimeout(() => child.kill('SIGKILL'), 200);
  await exited;
  clearTimeout(timer);
}

function hostResolvConf(): string {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
}

/**
 * The host's resolv.conf without its nameservers (a loopback resolver such as
 * systemd-resolved's is unreachable from a namespace), with `nameservers`
 * instead; search and options lines are kept.
 */
function filteredResolvConf(nameservers: string[]): string {
  const kept = hostResolvConf()
    .split('\n')
    .filter((l) => /^\s*(search|domain|options)\b/.test(l));
  return [...nameservers.map((n) => `nameserver ${n}`), ...kept, ''].join('\n');
}
