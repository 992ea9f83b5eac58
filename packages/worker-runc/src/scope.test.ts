/**
 * One long-lived process, two builds at once with different secrets and ssh
 * agents: each step sees only its own build's (they reach runc through the
 * build's client, never through a plugin option).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBkt, type ProgressEvent } from '@bkt/core';
import { createHostClient } from '@bkt/fsutil';
import { local, marshalBytes } from '@bkt/llb';
import localSource from '@bkt/source-local';
import { openSolver, type Solver } from '@bkt/solver';
import { makeBusyboxRootfs } from '@bkt/testkit';
import runcWorker from './index.js';

let dir: string;
let base: string;
let root: string;
let solver: Solver;
const agents: Server[] = [];

/** A stand-in ssh-agent: a unix socket that greets every connection with `name`. */
async function fakeAgent(name: string): Promise<string> {
  const path = join(dir, `${name}.sock`);
  const server = createServer((c) => c.end(`${name}\n`));
  await new Promise<void>((ok) => server.listen(path, ok));
  agents.push(server);
  return path;
}

/** What a unix socket says first. */
function greeting(path: string): Promise<string> {
  return new Promise((ok, fail) => {
    const chunks: Buffer[] = [];
    const c = createConnection(path);
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('end', () => ok(Buffer.concat(chunks).toString().trim()));
    c.on('error', fail);
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bkt-worker-scope-'));
  base = await makeBusyboxRootfs(join(dir, 'base'));
  root = join(dir, 'store');
  solver = await openSolver({ root, bkt: await createBkt([localSource(), runcWorker()]) });
});
afterAll(async () => {
  await solver?.close();
  for (const a of agents) a.close();
  await rm(dir, { recursive: true, force: true });
});

describe('two builds in one process', () => {
  it('each step sees only its own build\'s secrets and ssh agent', async () => {
    const seen = new Map<string, string>(); // secret seen in a container → agent greeting in the same container
    const build = async (name: string) => {
      const agent = await fakeAgent(`agent-${name}`);
      const secret = `secret-of-${name}`;
      const state = local('base')
        .run({
          shell: `[ "$(cat /run/secrets/tok)" = "$EXPECT" ] && echo own-secret; [ -S /run/buildkit/ssh_agent.0 ] && echo has-agent; sleep 3`,
          env: { EXPECT: secret, NONCE: `${name}-${Date.now()}` },
          mounts: [
            { type: 'secret', target: '/run/secrets/tok', id: 'tok' },
            { type: 'ssh', target: '/run/buildkit/ssh_agent.0', id: 'default' },
          ],
        })
        .root();
      const events: ProgressEvent[] = [];
      const client = createHostClient({
        localDirs: { base },
        secrets: { get: async (id) => (id === 'tok' ? new TextEncoder().encode(secret) : null) },
        ssh: { socketPath: async (id) => (id === 'default' ? agent : null) },
        storeRoot: root,
      });
      await solver.solve({ definition: marshalBytes(state), client, onProgress: (e) => events.push(e) });
      return events
        .filter((e): e is Extract<ProgressEvent, { type: 'log' }> => e.type === 'log')
        .map((e) => Buffer.from(e.log.msg).toString())
        .join('');
    };
    const running = Promise.all([build('a'), build('b')]);
    // While both steps run, look into each container: its secret file and what its agent socket answers.
    for (let i = 0; i < 100 && seen.size < 2; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const state = join(root, 'runc/state');
      if (!existsSync(state)) continue;
      const list = execFileSync('runc', ['--root', state, 'list', '-f', 'json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      for (const c of (JSON.parse(list || '[]') as { pid: number; status: string }[] | null) ?? []) {
        if (c.status !== 'running' || !c.pid) continue;
        const secret = await readFile(`/proc/${c.pid}/root/run/secrets/tok`, 'utf8').catch(() => undefined);
        const agent = await greeting(`/proc/${c.pid}/root/run/buildkit/ssh_agent.0`).catch(() => undefined);
        if (secret && agent) seen.set(secret, agent);
      }
    }
    const [logsA, logsB] = await running;
    expect(logsA).toBe('own-secret\nhas-agent\n');
    expect(logsB).toBe('own-secret\nhas-agent\n');
    expect(Object.fromEntries(seen)).toEqual({ 'secret-of-a': 'agent-a', 'secret-of-b': 'agent-b' });
  });
});
