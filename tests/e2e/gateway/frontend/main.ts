/**
 * A frontend image's program for the e2e tests: a Node program speaking
 * LLBBridge over its stdin/stdout (bundled with esbuild, run by the image's
 * own node). It reads a context file with ReadFile, solves a sub-graph of
 * its own, and returns the result with an image config.
 *
 * Options (`BUILDKIT_FRONTEND_OPT_<n>=<key>=<value>`): `filename`, `mode`
 * (`network-host`, `insecure`: ask for what the client may not have granted;
 * `fail`: return an error; `exit`: exit without returning).
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { Duplex } from 'node:stream';
import * as gw from '@bkt/api/gateway';
import * as pb from '@bkt/api/pb';
import { copy, local, mkfile, scratch, type State } from '@bkt/llb';
import { GrpcCallError, StreamGrpcClient } from '../../../../packages/testkit/src/grpc-stream.js';

function frontendOpts(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('BUILDKIT_FRONTEND_OPT_') || v === undefined) continue;
    const eq = v.indexOf('=');
    out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

async function main(): Promise<void> {
  const opts = frontendOpts();
  const client = new StreamGrpcClient(Duplex.from({ readable: process.stdin, writable: process.stdout }));
  const solve = async (state: State) => {
    const res = await client.call('solve', { ...gw.SolveRequest.fromPartial({}), Definition: state.marshal(), allowResultReturn: true, allowResultArrayRef: true });
    if (res.result?.result?.$case !== 'ref') throw new Error('Solve returned no single ref');
    return res.result.result.value.id;
  };
  const read = async (ref: string, path: string) => (await client.call('readFile', { Ref: ref, FilePath: path, Range: undefined })).Data.toString();
  const fail = async (message: string, code = 2) => {
    await client.call('return', { result: undefined, error: { code, message, details: [] } });
  };
  try {
    const pong = await client.call('ping', {});
    if (opts.mode === 'exit') process.exit(3);
    if (opts.mode === 'fail') return await fail('the test frontend was asked to fail', 3);
    if (opts.mode === 'network-host' || opts.mode === 'insecure') {
      const run = scratch().run({ args: ['/bin/true'], ...(opts.mode === 'network-host' ? { network: 'host' } : { security: 'insecure' }) }).root();
      return await solve(run).then(
        () => fail(`the build let the frontend run with ${opts.mode}`),
        (err: GrpcCallError) => fail(`frontend refused (grpc code ${err.code}): ${err.message}`, err.code),
      );
    }
    const inputs = (await client.call('inputs', {})).Definitions;
    const { fromDefinition } = await import('@bkt/llb');
    const context = inputs.context ? fromDefinition(inputs.context) : local('context');
    const dockerfileDir = inputs.dockerfile ? fromDefinition(inputs.dockerfile) : local('dockerfile');
    const ctxRef = await solve(context);
    const message = await read(ctxRef, 'message.txt');
    const dfRef = await solve(dockerfileDir);
    const dockerfile = await read(dfRef, opts.filename || 'Dockerfile').catch(() => '(no Dockerfile)');
    const entries = (await client.call('readDir', { Ref: ctxRef, DirPath: '/', IncludePattern: '*.txt' })).entries.map((e) => e.path);
    // Its own definition (BuildKit ≥ 0.12 mounts it; older daemons do not).
    let frontendOps = -1;
    try {
      frontendOps = pb.Definition.decode(readFileSync('/run/config/buildkit/metadata/frontend.bin')).def.length;
    } catch {
      // left -1
    }
    const env = {
      product: process.env.BUILDKIT_EXPORTEDPRODUCT,
      session: Boolean(process.env.BUILDKIT_SESSION_ID),
      workers: (JSON.parse(process.env.BUILDKIT_WORKERS ?? '[]') as { ID: string }[]).length,
      frontendOps,
      interfaces: Object.keys(networkInterfaces()).sort(),
      caps: pong.FrontendAPICaps.filter((c) => c.Enabled).length,
      opts,
    };
    const out = scratch()
      .file(mkfile('/greeting.txt', 0o644, `frontend says: ${message.trim().toUpperCase()}\n`))
      .file(mkfile('/dockerfile-seen.txt', 0o644, dockerfile))
      .file(mkfile('/context-entries.txt', 0o644, entries.join('\n') + '\n'))
      .file(mkfile('/env.json', 0o644, JSON.stringify(env)))
      .file(copy(context, '/message.txt', '/copied.txt'));
    const ref = await solve(out);
    const config = {
      architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      os: 'linux',
      config: { Env: ['FROM_FRONTEND=1'], Cmd: ['/greeting.txt'], Labels: { 'built-by': 'bkt-e2e-test-frontend' } },
      rootfs: { type: 'layers', diff_ids: [] },
    };
    await client.call('return', {
      result: { result: { $case: 'ref', value: { id: ref, def: undefined } }, metadata: { 'containerimage.config': Buffer.from(JSON.stringify(config)) }, attestations: {} },
      error: undefined,
    });
  } catch (err) {
    process.stderr.write(`test frontend: ${(err as Error).stack ?? String(err)}\n`);
    await fail(`test frontend: ${(err as Error).message}`).catch(() => undefined);
  }
}

// Exit as soon as the result is returned, as Go frontends do: closing the connection first would let the
// daemon see its LLBBridge server closed while the process still runs (BuildKit then fails the build).
void main().then(() => process.exit(0));
