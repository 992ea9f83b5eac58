/** A real `git daemon` on 127.0.0.1 for this package's tests. */
import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:net';

export interface GitDaemon {
  /** `127.0.0.1:PORT`: clone `git://${host}/NAME.git`. */
  host: string;
  stop(): void;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Serves every repository under `reposDir`; resolves once `repo.git` (which must exist) answers `git ls-remote`. */
export async function serveRepositories(reposDir: string): Promise<GitDaemon> {
  const port = await freePort();
  const daemon = spawn('git', ['daemon', '--reuseaddr', '--export-all', `--base-path=${reposDir}`, '--listen=127.0.0.1', `--port=${port}`, reposDir], { stdio: 'ignore' });
  const host = `127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      execFileSync('git', ['ls-remote', `git://${host}/repo.git`], { stdio: 'pipe' });
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { host, stop: () => void daemon.kill('SIGTERM') };
}
