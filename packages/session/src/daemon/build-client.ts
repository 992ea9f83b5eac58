/**
 * `sessionBuildClient`: core's client seam (`BuildClient`) over a client's
 * session, for one build run by the daemon. Local directories come over
 * FileSync, outputs go over FileSend, credentials come from Auth, secrets
 * from Secrets, SSH agents through SSH forwarding. The build's owner calls
 * `close()` when the build is over (e.g. in the scope's `onFinish`): open
 * file transfers are finished and the SSH sockets removed.
 */
import { BktError, type BuildClient, type OutputOptions, type RegistryCredentials } from '@bkt/core';
import { AuthService } from '@bkt/api/filesync';
import { SecretsService } from '@bkt/api/secrets';
import { CallError, sessionError, Status } from '../grpc/status.js';
import { SessionLocalDir } from './local-dir.js';
import { sessionOutputDir, sessionOutputFile, type OutputTargetRef } from './outputs.js';
import type { Session } from './session.js';
import { sessionSshAgents } from './ssh.js';

export const CREDENTIALS_METHOD = AuthService.credentials.path;
export const GET_SECRET_METHOD = SecretsService.getSecret.path;

export interface SessionBuildClientOptions {
  /** The local directory names the solve request gives (BuildKit's frontend inputs / `local` names). */
  localDirNames: readonly string[];
  /**
   * The client's target an output goes to. The solve request's exporters
   * are the client's targets by index; a daemon maps each exporter's
   * output here (default: target 0 for everything).
   */
  outputTarget?(output: { kind: 'dir' | 'file' | 'stdout'; dest?: string; what: string; exporter?: number }): OutputTargetRef;
  /** Cancels the client calls of the build (default: the session's own lifetime). */
  signal?: AbortSignal;
  /** Where the SSH agent sockets are made (default: the OS temp dir). */
  tempDir?: string;
}

export interface SessionBuildClient extends BuildClient {
  /** Finishes the open transfers and removes the SSH sockets. */
  close(): Promise<void>;
}

export function sessionBuildClient(session: Session, opts: SessionBuildClientOptions): SessionBuildClient {
  const names = [...new Set(opts.localDirNames)].sort();
  const dirs = new Map<string, SessionLocalDir>();
  const ssh = sessionSshAgents(session, { tempDir: opts.tempDir });
  const signal = opts.signal ? AbortSignal.any([opts.signal, session.signal]) : session.signal;
  const targetOf = (kind: 'dir' | 'file' | 'stdout', dest: string | undefined, o: OutputOptions) => opts.outputTarget?.({ kind, dest, what: o.what, ...(o.exporter !== undefined ? { exporter: o.exporter } : {}) }) ?? { id: 0 };

  return {
    localDirNames: () => [...names],
    localDir(name) {
      if (!names.includes(name)) return undefined;
      let dir = dirs.get(name);
      if (!dir) dirs.set(name, (dir = new SessionLocalDir(session, name)));
      return dir;
    },
    openDir: async (dest, o) => sessionOutputDir(session, targetOf('dir', dest, o), o.what, signal),
    openFile: async (dest, o) => sessionOutputFile(session, targetOf('file', dest, o), o.what, signal),
    openStdout: async (o) => sessionOutputFile(session, targetOf('stdout', undefined, o), o.what, signal),
    secrets: {
      async get(id) {
        if (!session.supports(GET_SECRET_METHOD)) return null;
        try {
          const res = await session.caller.unary(SecretsService.getSecret, { ID: id, annotations: {} }, { signal });
          return new Uint8Array(res.data);
        } catch (err) {
          // As BuildKit's secrets.GetSecret: NotFound and Unimplemented mean "no such secret".
          if (err instanceof CallError && (err.code === Status.NOT_FOUND || err.code === Status.UNIMPLEMENTED)) return null;
          throw sessionError(`secret "${id}"`, err);
        }
      },
    },
    ssh,
    async credentials(host): Promise<RegistryCredentials | null> {
      if (!session.supports(CREDENTIALS_METHOD)) return null;
      try {
        const res = await session.caller.unary(AuthService.credentials, { Host: host }, { signal });
        return res.Username === '' && res.Secret === '' ? null : { username: res.Username, secret: res.Secret };
      } catch (err) {
        if (err instanceof CallError && (err.code === Status.NOT_FOUND || err.code === Status.UNIMPLEMENTED)) return null;
        throw sessionError(`registry credentials for ${host}`, err);
      }
    },
    async close() {
      const results = await Promise.allSettled([...[...dirs.values()].map((d) => d.close()), ssh.close()]);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason instanceof BktError ? failed.reason : sessionError('closing the session client', failed.reason);
    },
  };
}
