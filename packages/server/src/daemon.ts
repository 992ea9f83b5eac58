/**
 * The daemon: the configured core and a solver over one store, the Control
 * service on every address (buildx's Controller, when enabled, on the unix
 * sockets only), the GC. `close()` cancels running builds, waits
 * for them to end (their mounts released, their history records complete),
 * stops serving and closes the store.
 */
import { access, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as control from '@bkt/api/control';
import * as controllerApi from '@bkt/api/controller';
import * as gateway from '@bkt/api/gateway';
import { composePlugins, createBkt, type Bkt } from '@bkt/core';
import { openSolver, type Solver } from '@bkt/solver';
import { executablePlatforms, workerPlatforms } from '@bkt/worker-runc';
import { BuildTracker } from './builds.js';
import { ClientFrontends } from './client-frontends.js';
import { Collector } from './collector.js';
import type { DaemonConfig } from './config.js';
import { controlService, type ControlBackend } from './control.js';
import { controllerDisabled, controllerService } from './controller.js';
import { DebugBuilds } from './debug-builds.js';
import { defaultGCPolicies, diskStat, parseDuration, resolveGCPolicies } from './gc.js';
import { bind, parseAddress, resolveGroup, tcpCredentials, type TlsFiles } from './listen.js';
import { daemonPreset } from './preset.js';
import { addService } from './rpc.js';
import { daemonSessions } from './sessions.js';
import { workerId, workerLabels, type WorkerInfo } from './worker.js';

export interface DaemonOptions {
  root: string;
  /** `unix:///path` and `tcp://host:port` addresses. */
  addresses: string[];
  /** The group of the unix sockets (name or gid). */
  group?: string;
  tls?: TlsFiles;
  config?: DaemonConfig;
  /** Where the config's plugins resolve from (its directory). */
  configDir?: string;
  debug?: boolean;
  log?(line: string): void;
  /**
   * The daemon side of client sessions: serves `Control.Session` and gives
   * a Solve's session id its client (default: `@bkt/session`'s manager).
   */
  sessions?: Pick<ControlBackend, 'session' | 'sessionClient'> & { closeAll?(): void };
}

export interface Daemon {
  /** The addresses served (a TCP port 0 replaced by the one chosen). */
  readonly addresses: string[];
  readonly solver: Solver;
  /** Cancels running builds, waits for them, stops serving, closes the store; once. */
  close(): Promise<void>;
}

/** Messages up to this size are accepted (a large Definition). */
const MAX_MESSAGE_BYTES = 64 << 20;
const DEFAULT_GC_INTERVAL = '10m';

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const config = opts.config ?? {};
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const debug = opts.debug ? log : () => {};
  const addresses = opts.addresses.map(parseAddress);
  const gid = opts.group !== undefined ? await resolveGroup(opts.group) : undefined;
  const gcInterval = parseDuration(config.gcInterval ?? DEFAULT_GC_INTERVAL, 'gcInterval');

  // Everything that can be checked is checked before the store is opened.
  for (const a of addresses) if (a.kind === 'tcp') await tcpCredentials(a, opts.tls ?? {});
  const disk = await diskStat(await existingAncestor(opts.root));
  const policies = config.gc === false ? [] : config.gcPolicy ? resolveGCPolicies(config.gcPolicy, disk) : defaultGCPolicies(disk);

  const worker = config.worker ?? {};
  const plugins = await composePlugins(
    daemonPreset({ registry: config.registry, worker: { runc: worker.runc, network: worker.network, logMaxBytes: worker.logMaxBytes, pidsLimit: worker.pidsLimit } }),
    { plugins: config.plugins, defaultPreset: config.defaultPreset },
    opts.configDir ?? process.cwd(),
  );
  const bkt: Bkt = await createBkt(plugins, { projectDir: opts.configDir ?? process.cwd() });
  let solver: Solver;
  try {
    solver = await openSolver({ root: opts.root, bkt, snapshotter: worker.snapshotter, maxParallelism: worker.maxParallelism, history: config.history });
  } catch (err) {
    await bkt.close();
    throw err;
  }
  const platforms = workerPlatforms(await executablePlatforms());
  const info: WorkerInfo = {
    id: workerId(opts.root),
    labels: workerLabels({ snapshotter: snapshotterLabel(worker.snapshotter), network: 'slirp4netns' }),
    platforms,
    gcPolicy: policies,
  };

  const builds = new BuildTracker();
  // Deleted builds (UpdateBuildHistory, or dropped by the history limits) reach ListenBuildHistory as DELETED.
  solver.onBuildDeleted((ref) => builds.deleted(ref));
  const shutdown = new AbortController();
  const collector = new Collector({ solver, root: opts.root, policies, intervalMs: gcInterval, busy: () => builds.running().length > 0, log });
  const sessions = opts.sessions ?? daemonSessions();
  /** What calls left running after their answers (tracked by the Control service); settled before the store closes. */
  const tracked = new Set<Promise<unknown>>();
  const clientFrontends = new ClientFrontends(async () => [{ id: info.id, labels: info.labels, platforms: info.platforms }]);
  const backend: ControlBackend = {
    solver,
    builds,
    permittedEntitlements: new Set(config.entitlements ?? []),
    worker: async () => info,
    diskStat: () => diskStat(opts.root),
    shutdown: shutdown.signal,
    afterBuild: () => collector.afterBuild(),
    track: (work) => {
      const settled: Promise<void> = work.then(
        () => void tracked.delete(settled),
        () => void tracked.delete(settled),
      );
      tracked.add(settled);
    },
    session: sessions.session,
    sessionClient: sessions.sessionClient,
    clientFrontends,
  };
  // buildx's Controller (builds kept open for Invoke until the client disconnects them) reads and writes host paths
  // as the daemon's user: served only when enabled, and only on unix sockets.
  const debugBuilds = new DebugBuilds();
  const controllerImpl = controllerService({
    solver,
    builds,
    debugBuilds,
    permittedEntitlements: backend.permittedEntitlements,
    shutdown: shutdown.signal,
    afterBuild: () => collector.afterBuild(),
  });
  const controlImpl = withDebugLog(controlService(backend), debug);
  const newServer = (controllerServed: boolean) => {
    const s = new grpc.Server({ 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES, 'grpc.max_send_message_length': MAX_MESSAGE_BYTES });
    addService(s, control.ControlService, controlImpl);
    addService(
      s,
      controllerApi.ControllerService,
      controllerServed
        ? controllerImpl
        : controllerDisabled(
            config.controller
              ? 'bktd serves the buildx Controller only on unix sockets (it reads and writes paths on the daemon\'s machine), never on tcp://'
              : 'bktd\'s buildx Controller is off: start bktd with --controller (or `controller: true` in bktd.config.ts) to serve it on its unix sockets; it grants whoever can reach the socket the daemon\'s access to host paths',
          ),
    );
    // LLBBridge of client-side frontends, routed by the buildkit-controlapi-buildid metadata key.
    s.addService(gateway.LLBBridgeService as unknown as grpc.ServiceDefinition, clientFrontends.handlers());
    return s;
  };
  const server = newServer(config.controller === true);
  /** TCP addresses get a server of their own: never the Controller. */
  const tcpServer = addresses.some((a) => a.kind === 'tcp') ? newServer(false) : undefined;

  const bound: string[] = [];
  /** Socket files this daemon created (removed on close; a live one it refused to take stays). */
  const sockets: string[] = [];
  const close = async () => {
    shutdown.abort(new Error('bktd is shutting down'));
    await debugBuilds.closeAll();
    await collector.stop();
    await builds.idle();
    sessions.closeAll?.();
    await Promise.all(tracked);
    await Promise.all(
      [server, tcpServer].map(
        (srv) =>
          srv &&
          new Promise<void>((resolve) => {
            const force = setTimeout(() => {
              srv.forceShutdown();
              resolve();
            }, 2000);
            srv.tryShutdown(() => {
              clearTimeout(force);
              resolve();
            });
          }),
      ),
    );
    try {
      await solver.close();
    } finally {
      await bkt.close();
      for (const path of sockets) await rm(path, { force: true });
    }
  };
  try {
    for (const a of addresses) {
      bound.push(await bind(a.kind === 'tcp' ? tcpServer! : server, a, { gid, tls: opts.tls ?? {} }));
      if (a.kind === 'unix') sockets.push(a.path);
    }
  } catch (err) {
    await close();
    throw err;
  }
  collector.start();
  let closing: Promise<void> | undefined;
  return { addresses: bound, solver, close: () => (closing ??= close()) };
}

/** `path`, or its nearest ancestor that exists (the disk a store root will be on). */
async function existingAncestor(path: string): Promise<string> {
  let p = resolve(path);
  for (;;) {
    try {
      await access(p);
      return p;
    } catch {
      if (dirname(p) === p) return p;
      p = dirname(p);
    }
  }
}

/** The snapshotter label: buildkitd's names for the configured kind (`auto` picks overlayfs where it works). */
function snapshotterLabel(kind: 'auto' | 'overlay' | 'copy' | undefined): string {
  return kind === 'copy' ? 'native' : 'overlayfs';
}

/** With debug on, each call and its failure is logged. */
function withDebugLog<T extends object>(impl: T, debug: (line: string) => void): T {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(impl) as [string, (...args: unknown[]) => unknown][]) {
    out[name] = (...args: unknown[]) => {
      debug(`rpc ${name}`);
      const r = fn(...args);
      if (r instanceof Promise) r.catch((err: Error) => debug(`rpc ${name}: ${err.message}`));
      return r;
    };
  }
  return out as T;
}

