import { bktdMain } from './main.js';
import type { Daemon } from './daemon.js';

/**
 * The `bktd` executable. SIGTERM or SIGINT cancels the running builds, waits
 * for them to end (mounts released, history records complete), closes the
 * store and exits 0 — also when it arrives while the daemon is starting; a
 * second signal, or a shutdown that takes over 30 s, exits 1 at once.
 */
const io = { stdout: process.stdout, stderr: process.stderr };
let daemon: Daemon | undefined;
let stopping: NodeJS.Signals | undefined;

function stop(sig: NodeJS.Signals, d: Daemon): void {
  io.stderr.write(`bktd: ${sig}: cancelling running builds and closing the store\n`);
  setTimeout(() => {
    io.stderr.write('bktd: shutdown took over 30 s; exiting\n');
    process.exit(1);
  }, 30_000).unref();
  d.close().then(
    () => {
      io.stderr.write('bktd: stopped\n');
      process.exit(0);
    },
    (err: Error) => {
      io.stderr.write(`bktd: shutdown: ${err.message}\n`);
      process.exit(1);
    },
  );
}

// Handlers first: a signal while the daemon starts stops it once it has started.
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    if (stopping) process.exit(1);
    stopping = sig;
    if (daemon) stop(sig, daemon);
  });
}

const started = await bktdMain(process.argv.slice(2), io);
if (typeof started === 'number') process.exit(started);
daemon = started;
if (stopping) stop(stopping, daemon);
