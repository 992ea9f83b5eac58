/**
 * Helpers of the daemon end-to-end tests: start the BUILT `bktd` on a unix
 * socket (or TCP) in a temp dir, and call it with a grpc-js client made from
 * the generated stubs (`control.ControlClient`), promisified.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import * as grpc from '@grpc/grpc-js';
import { control } from '@bkt/api';
import { REPO } from '../helpers.js';

export const BKTD = join(REPO, 'packages/server/bin/bktd.js');

export interface RunningDaemon {
  proc: ResultPromise<{ reject: false; all: true }>;
  /** The addresses it listens on, as it printed them. */
  addresses: string[];
  /** Everything it wrote to stderr so far. */
  output(): string;
  /** Sends `signal` (default SIGTERM) and resolves with the exit code once it exits. */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

/** Starts `bktd ARGS`; resolves once it printed every `listening on` line, rejects when it exits first. */
export async function startBktd(args: string[], opts: { cwd: string; expectAddresses?: number } = { cwd: REPO }): Promise<RunningDaemon> {
  const proc = execa('node', [BKTD, ...args], { cwd: opts.cwd, reject: false, all: true, env: { BKT_DEBUG: '' } });
  let out = '';
  const addresses: string[] = [];
  const want = opts.expectAddresses ?? args.filter((a) => a === '--addr').length;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bktd did not start within 60 s:\n${out}`)), 60_000);
    proc.all!.on('data', (d: Buffer) => {
      out += d.toString();
      for (const m of out.matchAll(/^bktd: listening on (\S+)$/gm)) if (!addresses.includes(m[1])) addresses.push(m[1]);
      if (addresses.length >= Math.max(want, 1)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void proc.then((r) => {
      clearTimeout(timer);
      reject(new Error(`bktd exited (${r.exitCode ?? r.signal}) before listening:\n${out}`));
    });
  });
  return {
    proc,
    addresses,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const r = await proc;
      return r.exitCode ?? -1;
    },
  };
}

/** Runs `bktd ARGS` expecting it to fail at start; its exit code and output. */
export async function bktdFails(args: string[], cwd = REPO): Promise<{ code: number; output: string }> {
  const r = await execa('node', [BKTD, ...args], { cwd, reject: false, all: true, timeout: 60_000 });
  return { code: r.exitCode ?? -1, output: String(r.all) };
}

/** A promisified Control client. */
export class Control {
  readonly raw: control.ControlClient;

  constructor(address: string, credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(), options: grpc.ClientOptions = {}) {
    this.raw = new control.ControlClient(address.replace(/^tcp:\/\//, ''), credentials, options);
  }

  close(): void {
    this.raw.close();
  }

  private unary<Req, Res>(method: (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Res) => void) => unknown, req: Req, opts: grpc.CallOptions = {}): Promise<Res> {
    return new Promise((resolve, reject) => method.call(this.raw, req, new grpc.Metadata(), opts, (e, r) => (e ? reject(e) : resolve(r))));
  }

  solve(req: Partial<control.SolveRequest>, opts: grpc.CallOptions = {}): Promise<control.SolveResponse> {
    return this.unary(this.raw.solve, control.SolveRequest.fromPartial(req), opts);
  }

  diskUsage(filter: string[] = []): Promise<control.DiskUsageResponse> {
    return this.unary(this.raw.diskUsage, { filter });
  }

  listWorkers(filter: string[] = []): Promise<control.ListWorkersResponse> {
    return this.unary(this.raw.listWorkers, { filter });
  }

  info(): Promise<control.InfoResponse> {
    return this.unary(this.raw.info, {});
  }

  updateBuildHistory(req: Partial<control.UpdateBuildHistoryRequest>): Promise<control.UpdateBuildHistoryResponse> {
    return this.unary(this.raw.updateBuildHistory, control.UpdateBuildHistoryRequest.fromPartial(req));
  }

  /** Every message of a server stream until it ends (rejects with its error status). */
  collect<T>(stream: grpc.ClientReadableStream<T>): Promise<T[]> {
    return new Promise((resolve, reject) => {
      const items: T[] = [];
      stream.on('data', (m: T) => items.push(m));
      stream.on('error', reject);
      stream.on('end', () => resolve(items));
    });
  }

  status(ref: string): Promise<control.StatusResponse[]> {
    return this.collect(this.raw.status({ Ref: ref }));
  }

  prune(req: Partial<control.PruneRequest>): Promise<control.UsageRecord[]> {
    return this.collect(this.raw.prune(control.PruneRequest.fromPartial(req)));
  }

  listenBuildHistory(req: Partial<control.BuildHistoryRequest>): grpc.ClientReadableStream<control.BuildHistoryEvent> {
    return this.raw.listenBuildHistory(control.BuildHistoryRequest.fromPartial(req));
  }
}

/** Calls a raw method with request bytes as they are (to send malformed messages). */
export function rawUnary(address: string, path: string, body: Buffer): Promise<{ code: number; details: string }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      (err) => {
        client.close();
        resolve({ code: err?.code ?? 0, details: err?.details ?? '' });
      },
    );
  });
}

/** Mounts under `dir` in this mount namespace. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4]?.startsWith(dir));
}

/** runc containers whose id starts with `bkt-`, in the runc state of `root`. */
export async function runcContainers(root: string): Promise<string[]> {
  const r = await execa('runc', ['--root', join(root, 'runc/state'), 'list', '-q'], { reject: false });
  return String(r.stdout).split('\n').filter((l) => l.trim() !== '');
}

/** Resolves once Status of `ref` shows a started vertex whose name contains `name` and a log holding `output`. */
export async function stepStarted(client: Control, ref: string, name: string, output: string): Promise<void> {
  const stream = client.raw.status({ Ref: ref });
  let started = false;
  let logs = '';
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (r: control.StatusResponse) => {
      if (r.vertexes.some((v) => v.name.includes(name) && v.started)) started = true;
      logs += Buffer.concat(r.logs.map((l) => l.msg)).toString();
      if (started && logs.includes(output)) resolve();
    });
    stream.on('error', reject);
    stream.on('end', () => reject(new Error(`build ${ref} ended before "${name}" started`)));
  });
  stream.cancel();
}
