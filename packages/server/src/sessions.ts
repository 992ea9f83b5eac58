/**
 * Client sessions (`@bkt/session`): `Control.Session` calls become sessions
 * of the daemon's manager, and a Solve naming one gets the client seam over
 * it — the client's local directories, output targets, secrets, ssh agents
 * and registry credentials.
 */
import { HEADER_SESSION_ID, SessionManager, sessionBuildClient } from '@bkt/session';
import type { ControlBackend, SessionBuild } from './control.js';
import { widenReceiveWindows } from './receive-window.js';

/** How long a Solve waits for the session it names to connect (clients open both at once). */
const SESSION_WAIT_MS = 10_000;

export interface DaemonSessions extends Required<Pick<ControlBackend, 'session' | 'sessionClient'>> {
  /** Ends every session. */
  closeAll(): void;
}

export function daemonSessions(opts: { tempDir?: string } = {}): DaemonSessions {
  const manager = new SessionManager();
  return {
    session: (call) => {
      // Refused here, before the call becomes a tunnel: a call announcing no session gets its status.
      if (call.metadata.get(HEADER_SESSION_ID.toLowerCase()).length === 0) {
        call.emit('error', { code: 3, details: `Control.Session: the call has no ${HEADER_SESSION_ID} header` });
        return;
      }
      // The tunnel carries the client's file transfers: not paced by 64 KiB windows.
      widenReceiveWindows(call);
      void manager.handleSession(call);
    },
    sessionClient: async (id: string, build: SessionBuild) => {
      const session = await manager.get(id, { timeoutMs: SESSION_WAIT_MS, signal: build.signal });
      return sessionBuildClient(session, {
        localDirNames: build.localDirNames,
        signal: build.signal,
        ...(opts.tempDir ? { tempDir: opts.tempDir } : {}),
        outputTarget: ({ what, exporter }) => ({ id: exporter ?? exporterIndex(build, what) }),
      });
    },
    closeAll: () => manager.closeAll(),
  };
}

/**
 * The index of an output's exporter when the solver did not say
 * (`OutputOptions.exporter`): the first exporter whose type starts the
 * output's description (`local exporter`, `tar exporter: dest`), else the first.
 */
function exporterIndex(build: SessionBuild, what: string): number {
  const type = what.split(/[\s:]/, 1)[0];
  const i = build.exporters.findIndex((e) => e.type === type);
  return i >= 0 ? i : 0;
}
