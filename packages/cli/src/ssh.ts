import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BktError } from '@bkt/core';
import type { SshAgentProvider } from '@bkt/worker-runc';

/** One `--ssh` value: an id and the agent sockets or private key files behind it (empty: `$SSH_AUTH_SOCK`). */
export interface SshSpec {
  id: string;
  paths: string[];
}

/** Parses `--ssh default|ID[=SOCKET|KEY[,KEY…]]` as buildx does; relative paths from `baseDir`. */
export function parseSsh(value: string, baseDir: string): SshSpec {
  const eq = value.indexOf('=');
  const id = (eq < 0 ? value : value.slice(0, eq)).trim();
  if (!id) throw new BktError('INVALID_ARGUMENT', `--ssh ${value}: expected default|ID[=SOCKET|KEY[,KEY…]]`, { attribute: 'ssh' });
  const paths = eq < 0 ? [] : value.slice(eq + 1).split(',').filter(Boolean).map((p) => resolve(baseDir, p));
  return { id, paths };
}

/** Forwarded ssh-agents for a build; `close()` stops the agents this process started for key files. */
export interface SshAgents extends SshAgentProvider {
  close(): Promise<void>;
}

/**
 * The agents of the `--ssh` values: an agent socket is forwarded as is (no
 * path: `$SSH_AUTH_SOCK`); private key files are loaded into an `ssh-agent`
 * started for this build (the keys never leave it).
 */
export async function openSshAgents(specs: SshSpec[], env: NodeJS.ProcessEnv = process.env): Promise<SshAgents> {
  const sockets = new Map<string, string>();
  const started: { child: ChildProcess; dir: string }[] = [];
  const close = async () => {
    for (const { child, dir } of started.splice(0)) {
      child.kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    }
  };
  try {
    for (const spec of specs) {
      if (sockets.has(spec.id)) throw new BktError('INVALID_ARGUMENT', `--ssh ${spec.id}: given twice`, { attribute: 'ssh' });
      if (spec.paths.length === 0) {
        const sock = env.SSH_AUTH_SOCK;
        if (!sock) throw new BktError('INVALID_ARGUMENT', `--ssh ${spec.id}: SSH_AUTH_SOCK is not set (start an ssh-agent, or give --ssh ${spec.id}=SOCKET|KEY)`, { attribute: 'ssh' });
        sockets.set(spec.id, sock);
        continue;
      }
      for (const p of spec.paths) {
        if (!existsSync(p)) throw new BktError('NOT_FOUND', `--ssh ${spec.id}: ${p} does not exist`, { attribute: 'ssh', path: p });
      }
      const isSocket = (p: string) => statSync(p).isSocket();
      if (spec.paths.length === 1 && isSocket(spec.paths[0]!)) {
        sockets.set(spec.id, spec.paths[0]!);
        continue;
      }
      const socket = spec.paths.find(isSocket);
      if (socket) throw new BktError('INVALID_ARGUMENT', `--ssh ${spec.id}: give either one agent socket or key files (${socket} is a socket)`, { attribute: 'ssh' });
      const agent = await startAgent();
      started.push(agent);
      const stderr = await sshAdd(spec.paths, { ...env, SSH_AUTH_SOCK: agent.socket });
      if (stderr !== null) {
        throw new BktError('INVALID_ARGUMENT', `--ssh ${spec.id}: ssh-add could not load ${spec.paths.join(', ')}: ${stderr.trim()}`, { attribute: 'ssh' });
      }
      sockets.set(spec.id, agent.socket);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { socketPath: async (id) => sockets.get(id) ?? null, close };
}

/** Starts `ssh-agent -D` on a socket in a new temp dir and waits for the socket. */
async function startAgent(): Promise<{ child: ChildProcess; dir: string; socket: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'bkt-ssh-'));
  const socket = join(dir, 'agent.sock');
  const child = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
  const failed = new Promise<never>((_, reject) => {
    child.once('error', (err) => reject(new BktError('INTERNAL', `--ssh: cannot start ssh-agent: ${err.message}`, { attribute: 'ssh' })));
    child.once('exit', (code) => reject(new BktError('INTERNAL', `--ssh: ssh-agent exited (${code})`, { attribute: 'ssh' })));
  });
  failed.catch(() => {});
  for (let i = 0; i < 100 && !existsSync(socket); i++) {
    await Promise.race([new Promise((r) => setTimeout(r, 20)), failed]);
  }
  if (!existsSync(socket)) {
    child.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
    throw new BktError('INTERNAL', '--ssh: ssh-agent did not create its socket within 2s', { attribute: 'ssh' });
  }
  return { child, dir, socket };
}

/** Runs `ssh-add KEYS` (no passphrase prompt); null on success, else its stderr. */
function sshAdd(keys: string[], env: NodeJS.ProcessEnv): Promise<string | null> {
  return new Promise((done) => {
    const child = execFile('ssh-add', keys, { env: { ...env, SSH_ASKPASS: '', DISPLAY: '' }, timeout: 10_000 }, (err, _stdout, stderr) => {
      done(err ? stderr || err.message : null);
    });
    child.stdin?.end();
  });
}
