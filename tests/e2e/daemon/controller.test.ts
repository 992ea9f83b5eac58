/**
 * buildx's Controller (seed 002) served by the BUILT bktd, through a
 * grpc-js client of the generated stubs: Build with a Status stream, Invoke
 * with a tty (a resize and a signal the process observes), stdin, re-attach
 * to a process by id, ListProcesses, DisconnectProcess, List, Disconnect
 * (nothing left: no runc container, no mount under the store), Info, and
 * Invoke into a failed build's step as the step left it. The Controller is
 * opt-in (`--controller`) and never served on tcp://.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { controller } from '@bkt/api';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, tempDir } from '../helpers.js';
import { bktdFails, mountsUnder, runcContainers, startBktd, type RunningDaemon } from './lib.js';

let work: string;
let root: string;
let daemon: RunningDaemon;
let client: controller.ControllerClient;
let context: string;

function unary<Req, Res>(method: string, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (r: Req, cb: (e: grpc.ServiceError | null, r: Res) => void) => void>)[method]!.call(client, req, (e, r) => (e ? reject(e) : resolve(r)));
  });
}

const options = (extra: Partial<controller.BuildOptions> = {}) => controller.BuildOptions.fromPartial({ ContextPath: context, ...extra });

/** An Invoke stream: its output so far, `until(text)`, and what it ended with. */
function invoke(init: { Ref: string; ProcessID?: string; InvokeConfig?: Partial<controller.InvokeConfig> }) {
  const call = client.invoke();
  let out = '';
  const waiters: (() => void)[] = [];
  const ended = new Promise<{ code: number; details: string }>((resolve) => {
    call.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details }));
    call.on('end', () => resolve({ code: 0, details: '' }));
  });
  call.on('data', (m: controller.Message) => {
    if (m.Input?.$case === 'File') out += m.Input.value.Data.toString();
    for (const w of waiters.splice(0)) w();
  });
  call.write(controller.Message.fromPartial({ Input: { $case: 'Init', value: { Ref: init.Ref, ProcessID: init.ProcessID ?? '', InvokeConfig: controller.InvokeConfig.fromPartial(init.InvokeConfig ?? {}) } } }));
  return {
    call,
    ended,
    get out() {
      return out;
    },
    send(input: controller.Message['Input']) {
      call.write(controller.Message.fromPartial({ Input: input }));
    },
    async until(want: RegExp, ms = 20_000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!want.test(out)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${want}; output: ${JSON.stringify(out)}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
    },
  };
}

beforeAll(async () => {
  work = await tempDir('controller');
  root = join(work, 'root');
  context = join(work, 'ctx');
  await mkdir(context, { recursive: true });
  await makeBusyboxRootfs(join(context, 'rootfs'));
  await writeFile(join(context, 'Dockerfile'), ['FROM scratch', 'COPY rootfs/ /', 'WORKDIR /app', 'RUN echo built-by-the-controller > /app/result.txt', ''].join('\n'));
  await writeFile(
    join(context, 'Failing.Dockerfile'),
    ['FROM scratch', 'COPY rootfs/ /', 'WORKDIR /work', 'RUN echo written-before-failing > /work/partial.txt && exit 7', ''].join('\n'),
  );
  const socket = join(work, 'bktd.sock');
  daemon = await startBktd(['--addr', `unix://${socket}`, '--root', root, '--controller'], { cwd: work });
  client = new controller.ControllerClient(`unix://${socket}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  if (daemon) expect(await daemon.stop()).toBe(0);
  if (work) await removeDir(work);
});

describe('bktd serves buildx.controller.v1.Controller', () => {
  it('Info names bkt', async () => {
    const info = await unary<controller.InfoRequest, controller.InfoResponse>('info', {});
    expect(info.buildxVersion?.package).toBe('@bkt/server');
    expect(info.buildxVersion?.version).toMatch(/^v\d/);
  });

  it('Build with Status, Invoke with a tty (resize, signal), stdin, re-attach, ListProcesses, DisconnectProcess, Disconnect', async () => {
    const ref = 'controller-ok';
    const vertexes: string[] = [];
    const status = client.status(controller.StatusRequest.fromPartial({ Ref: ref }));
    const statusDone = new Promise<void>((resolve, reject) => {
      status.on('data', (s: controller.StatusResponse) => vertexes.push(...s.vertexes.map((v) => v.name)));
      status.on('end', () => resolve());
      status.on('error', reject);
    });
    const built = await unary<controller.BuildRequest, controller.BuildResponse>('build', controller.BuildRequest.fromPartial({ Ref: ref, Options: options() }));
    expect(built.ExporterResponse).toBeDefined();
    await statusDone;
    expect(vertexes).toContain('[3/3] RUN echo built-by-the-controller > /app/result.txt');
    expect((await unary<controller.ListRequest, controller.ListResponse>('list', {})).keys).toContain(ref);

    // A tty process (the container's init): its size, a resize and a signal it traps.
    const shell = invoke({
      Ref: ref,
      ProcessID: 'shell',
      InvokeConfig: {
        Cmd: ['/bin/sh', '-c', 'trap "echo got-usr1" USR1; trap "echo winched; stty size" WINCH; cat /app/result.txt; pwd; echo ready; while :; do sleep 0.1; done'],
        Tty: true,
      },
    });
    await shell.until(/built-by-the-controller\r\n\/app\r\nready/);
    shell.send({ $case: 'Resize', value: { Rows: 33, Cols: 99 } });
    await shell.until(/winched\r\n33 99/);
    shell.send({ $case: 'Signal', value: { Name: 'USR1' } });
    await shell.until(/got-usr1/);

    // A second process beside it, fed on stdin; the client goes away and comes back to it.
    const cat = invoke({ Ref: ref, ProcessID: 'cat', InvokeConfig: { Cmd: ['cat'] } });
    cat.send({ $case: 'File', value: { Fd: 0, EOF: false, Data: Buffer.from('first line\n') } });
    await cat.until(/first line\n/);
    const listed = await unary<controller.ListProcessesRequest, controller.ListProcessesResponse>('listProcesses', { Ref: ref });
    expect(listed.Infos.map((i) => i.ProcessID).sort()).toEqual(['cat', 'shell']);
    expect(listed.Infos.find((i) => i.ProcessID === 'shell')?.InvokeConfig?.Tty).toBe(true);
    cat.call.end();
    expect((await cat.ended).code).toBe(grpc.status.OK);
    const again = invoke({ Ref: ref, ProcessID: 'cat' });
    again.send({ $case: 'File', value: { Fd: 0, EOF: false, Data: Buffer.from('after re-attach\n') } });
    await again.until(/after re-attach\n/);
    expect(again.out).not.toContain('first line');

    await unary('disconnectProcess', { Ref: ref, ProcessID: 'cat' });
    expect((await again.ended).code).not.toBe(grpc.status.OK);
    const left = await unary<controller.ListProcessesRequest, controller.ListProcessesResponse>('listProcesses', { Ref: ref });
    expect(left.Infos.map((i) => i.ProcessID)).toEqual(['shell']);
    await expect(unary('disconnectProcess', { Ref: ref, ProcessID: 'nope' })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });

    expect(await runcContainers(root)).toHaveLength(1);
    await unary('disconnect', { Ref: ref });
    await shell.ended;
    expect((await unary<controller.ListRequest, controller.ListResponse>('list', {})).keys).not.toContain(ref);
    expect(await runcContainers(root)).toEqual([]);
    expect(mountsUnder(root)).toEqual([]);
    await expect(unary('listProcesses', { Ref: ref })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it('a failed Build is an error, and Invoke opens the failed step as it left it', async () => {
    const ref = 'controller-failed';
    const err = await unary('build', controller.BuildRequest.fromPartial({ Ref: ref, Options: options({ DockerfileName: 'Failing.Dockerfile' }) })).catch((e: grpc.ServiceError) => e);
    expect((err as grpc.ServiceError).details).toMatch(/exit code: 7/);
    const p = invoke({ Ref: ref, InvokeConfig: { Cmd: ['/bin/sh', '-c', 'pwd; cat partial.txt'] } });
    expect(await p.ended).toEqual({ code: grpc.status.OK, details: '' });
    expect(p.out).toBe('/work\nwritten-before-failing\n');
    const exit3 = invoke({ Ref: ref, InvokeConfig: { Cmd: ['/bin/sh', '-c', 'exit 3'], Rollback: true } });
    expect((await exit3.ended).details).toMatch(/exited with code 3/);
    await unary('disconnect', { Ref: ref });
    expect(await runcContainers(root)).toEqual([]);
    await expect(unary('disconnect', { Ref: ref })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it('names what it cannot do', async () => {
    await expect(unary('build', controller.BuildRequest.fromPartial({ Ref: 'bad-1', Options: options({ PrintFunc: 'outline' }) }))).rejects.toMatchObject({
      code: grpc.status.UNIMPLEMENTED,
      details: expect.stringMatching(/PrintFunc/),
    });
    await expect(unary('build', controller.BuildRequest.fromPartial({ Ref: 'bad-2', Options: options({ ContextPath: '' }) }))).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringMatching(/ContextPath/),
    });
    const orphan = invoke({ Ref: 'no-such-build' });
    expect((await orphan.ended).code).toBe(grpc.status.NOT_FOUND);
  });
});

describe('the Controller is opt-in and served on unix sockets only', () => {
  const build = (c: controller.ControllerClient) =>
    new Promise<grpc.ServiceError | null>((resolve) =>
      c.build(controller.BuildRequest.fromPartial({ Ref: 'never', Options: { ContextPath: '/etc', DockerfileName: '/etc/passwd', MetadataFile: join(work, 'never.json') } }), (e) => resolve(e)),
    );

  it('a default bktd answers Controller.Build UNIMPLEMENTED naming --controller, and builds nothing', async () => {
    const socket = join(work, 'default.sock');
    const d = await startBktd(['--addr', `unix://${socket}`, '--root', join(work, 'root-default')], { cwd: work });
    const c = new controller.ControllerClient(`unix://${socket}`, grpc.credentials.createInsecure());
    try {
      const err = await build(c);
      expect(err?.code).toBe(grpc.status.UNIMPLEMENTED);
      expect(err?.details).toMatch(/Controller is off: start bktd with --controller \(or `controller: true` in bktd.config.ts\)/);
      expect(err?.details).toMatch(/grants whoever can reach the socket the daemon's access to host paths/);
    } finally {
      c.close();
      expect(await d.stop()).toBe(0);
    }
    expect(() => readFileSync(join(work, 'never.json'))).toThrow();
  });

  it('enabled (controller: true in the config), a tcp:// listener (mutual TLS) still never serves it; the unix socket does', async () => {
    const certs = join(work, 'certs');
    await mkdir(certs, { recursive: true });
    await writeFile(join(certs, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: certs, stdio: 'pipe' });
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=ca', '-keyout', 'ca.key', '-out', 'ca.pem');
    for (const name of ['server', 'client']) {
      ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
      ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', `${name}.pem`, '-extfile', 'ext.cnf');
    }
    await writeFile(join(certs, 'bktd.config.json'), JSON.stringify({ controller: true }));
    const socket = join(work, 'both.sock');
    const d = await startBktd(
      ['--config', 'bktd.config.json', '--addr', `unix://${socket}`, '--addr', 'tcp://127.0.0.1:0', '--root', join(work, 'root-both'), '--tlscert', 'server.pem', '--tlskey', 'server.key', '--tlscacert', 'ca.pem'],
      { cwd: certs },
    );
    const tcp = d.addresses.find((a) => a.startsWith('tcp://'))!;
    const read = (f: string) => readFileSync(join(certs, f));
    const overTcp = new controller.ControllerClient(tcp.slice('tcp://'.length), grpc.credentials.createSsl(read('ca.pem'), read('client.key'), read('client.pem')));
    const overUnix = new controller.ControllerClient(`unix://${socket}`, grpc.credentials.createInsecure());
    try {
      const err = await build(overTcp);
      expect(err?.code).toBe(grpc.status.UNIMPLEMENTED);
      expect(err?.details).toMatch(/only on unix sockets .*never on tcp:\/\//);
      const info = await new Promise<grpc.ServiceError | null>((resolve) => overTcp.info(controller.InfoRequest.fromPartial({}), (e) => resolve(e)));
      expect(info?.code).toBe(grpc.status.UNIMPLEMENTED);
      const viaUnix = await new Promise<controller.InfoResponse>((resolve, reject) => overUnix.info(controller.InfoRequest.fromPartial({}), (e, r) => (e ? reject(e) : resolve(r))));
      expect(viaUnix.buildxVersion?.package).toBe('@bkt/server');
    } finally {
      overTcp.close();
      overUnix.close();
      expect(await d.stop()).toBe(0);
    }
    expect(() => readFileSync(join(work, 'never.json'))).toThrow();
  });

  it('a config whose controller is not a boolean is refused at start, naming the key', async () => {
    await writeFile(join(work, 'bad.config.json'), JSON.stringify({ controller: 'yes' }));
    const r = await bktdFails(['--config', 'bad.config.json', '--addr', `unix://${join(work, 'bad.sock')}`, '--root', join(work, 'root-bad')], work);
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/bad\.config\.json: "controller" must be a boolean, got/);
  });
});
