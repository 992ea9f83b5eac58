#!/usr/bin/env node
/**
 * A bktd client in its own process, for the daemon's end-to-end tests and
 * bench/daemon: it opens a session over `Control.Session` (`openSession` of
 * @bkt/session, serving this process's host client), sends one Solve naming
 * it, and reports on stdout, one JSON object a line:
 *
 *   {"event":"session","id":…}                  the session is open, the Solve sent
 *   {"event":"stalled","dir":…,"path":…,"bytes":N}  (with stallAfterBytes) the sender stopped mid-file
 *   {"event":"done","ok":true,"response":{…},"reads":{…},"ms":N}
 *   {"event":"done","ok":false,"code":N,"details":"…","reads":{…},"ms":N}
 *
 * `reads` counts what the FileSync sender sent: bytes by directory name and
 * path (a read that sent nothing counts 0). With `steps: true` (and a
 * `ref`), the client follows `Control.Status` of the build too, and the done
 * event has `steps`: each vertex's name and its started/completed times in
 * ms from the client's start (where the daemon's time went). Exit code 0
 * when the Solve succeeded, 1 when it failed.
 *
 *   node session-client.mjs SPEC.json
 *
 * SPEC: { address, ref?, sharedKey?, localDirs: {name: dir}, frontend?,
 * frontendAttrs?, definitionFile? (marshalled pb.Definition), exporters?:
 * [{Type, Attrs}], outputs?: {index: {type: 'dir'|'file', dest}},
 * stallAfterBytes?: N (once a file has sent N bytes, its sender waits for ever),
 * steps?: boolean }
 *
 * It imports the BUILT packages (run `npm run build` first).
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import * as control from '@bkt/api/control';
import * as pb from '@bkt/api/pb';
import { createHostClient } from '@bkt/fsutil';
import { openSession } from '@bkt/session';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const report = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

/** reads[dir][path] = bytes sent. */
const reads = {};
let stalled = false;

/** The host client, its directories' reads counted (and stalled once, when asked). */
function countingClient(inner) {
  return {
    ...inner,
    localDir(name) {
      const dir = inner.localDir(name);
      if (!dir) return undefined;
      return {
        name: dir.name,
        syncKey: dir.syncKey,
        stat: (selection, signal) => dir.stat(selection, signal),
        async *read(path, signal) {
          const byPath = (reads[name] ??= {});
          byPath[path] ??= 0;
          for await (const chunk of dir.read(path, signal)) {
            byPath[path] += chunk.length;
            yield chunk;
            if (spec.stallAfterBytes !== undefined && !stalled && byPath[path] >= spec.stallAfterBytes) {
              stalled = true;
              report({ event: 'stalled', dir: name, path, bytes: byPath[path] });
              await new Promise(() => {});
            }
          }
        },
      };
    },
  };
}

const started = Date.now();
const client = new control.ControlClient(spec.address, grpc.credentials.createInsecure());
const session = openSession(client, countingClient(createHostClient({ localDirs: spec.localDirs ?? {} })), {
  ...(spec.sharedKey ? { sharedKey: spec.sharedKey } : {}),
  ...(spec.outputs ? { outputs: spec.outputs } : {}),
});
report({ event: 'session', id: session.id });

const request = control.SolveRequest.fromPartial({
  Ref: spec.ref ?? '',
  Session: session.id,
  Exporters: spec.exporters ?? [],
  ...(spec.frontend ? { Frontend: spec.frontend, FrontendAttrs: spec.frontendAttrs ?? {} } : {}),
  ...(spec.definitionFile ? { Definition: pb.Definition.decode(readFileSync(spec.definitionFile)) } : {}),
});
/** Vertex digest → { name, started, completed } (ms since the client's start). */
const steps = new Map();
let statusDone = Promise.resolve();
if (spec.steps && spec.ref) {
  const call = client.status({ Ref: spec.ref });
  const at = (t) => (t ? Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6) - started : undefined);
  call.on('data', (res) => {
    for (const v of res.vertexes) steps.set(v.digest, { name: v.name, cached: v.cached, started: at(v.started), completed: at(v.completed) });
  });
  statusDone = new Promise((resolve) => {
    call.on('status', resolve);
    call.on('error', resolve);
  });
}
client.solve(request, async (err, response) => {
  const ms = Date.now() - started;
  if (spec.steps) await Promise.race([statusDone, new Promise((r) => setTimeout(r, 2_000).unref())]);
  const extra = spec.steps ? { steps: [...steps.values()] } : {};
  if (err) report({ event: 'done', ok: false, code: err.code, details: err.details, reads, ms, ...extra });
  else report({ event: 'done', ok: true, response: response.ExporterResponse, reads, ms, ...extra });
  session.close();
  client.close();
  process.exitCode = err ? 1 : 0;
  // Nothing should keep the process alive after this; if something does, it still ends.
  setTimeout(() => process.exit(), 5_000).unref();
});
