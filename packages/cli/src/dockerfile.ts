/**
 * `bkt build` of a Dockerfile: the flags of `docker buildx build` turned into
 * a solve of the `dockerfile.v0` frontend (its attrs, local dirs, secrets,
 * ssh agents, entitlements), as buildx maps them for BuildKit.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { BktError, type Attrs, type SecretProvider } from '@bkt/core';
import { parseEntitlements } from './entitlements.js';
import { ociLayoutContext } from './oci-layout-context.js';
import { loadSecrets, parseSecret } from './secrets.js';
import { openSshAgents, parseSsh, type SshAgents } from './ssh.js';

/** The Dockerfile flags of `bkt build`, as commander hands them over. */
export interface DockerfileFlags {
  file?: string;
  target?: string;
  buildArg: string[];
  buildContext: string[];
  secret: string[];
  ssh: string[];
  platform?: string;
  label: string[];
  cache: boolean;
  noCacheFilter: string[];
  addHost: string[];
  allow: string[];
  shmSize?: string;
  ulimit: string[];
  network?: string;
  pull?: boolean;
  /** `--frontend NAME`: the frontend to solve with (default `dockerfile.v0`; `gateway.v0` runs `--opt source=IMAGE`). */
  frontend?: string;
  /** `--opt KEY=VALUE`: frontend attributes as given (as buildctl's), over those the other flags set. */
  opt?: string[];
}

/**
 * The Dockerfile flags that make `bkt build` a Dockerfile build (see
 * docs/cli.md). `--platform`, `-t` and `--push` are not among them: they
 * apply to a config target too.
 */
export function hasDockerfileFlags(f: DockerfileFlags): boolean {
  return (
    f.file !== undefined ||
    f.target !== undefined ||
    f.shmSize !== undefined ||
    f.network !== undefined ||
    f.frontend !== undefined ||
    (f.opt?.length ?? 0) > 0 ||
    !!f.pull ||
    [f.buildArg, f.buildContext, f.secret, f.ssh, f.label, f.noCacheFilter, f.addHost, f.ulimit].some((l) => l.length > 0)
  );
}

/** A prepared frontend solve; `close()` removes the stdin Dockerfile's temp dir and stops started ssh-agents. */
export interface DockerfileSolve {
  /** `dockerfile.v0`, or the `--frontend` flag's. */
  frontend: string;
  frontendAttrs: Attrs;
  localDirs: Record<string, string>;
  entitlements: string[];
  secrets: SecretProvider;
  ssh: SshAgents;
  close(): Promise<void>;
}

export interface DockerfileInputs {
  /** The CONTEXT positional: a directory, or `-` for a Dockerfile on stdin and an empty context. */
  context: string;
  cwd: string;
  stdin: NodeJS.ReadableStream;
  env?: NodeJS.ProcessEnv;
}

export async function prepareDockerfileSolve(flags: DockerfileFlags, input: DockerfileInputs): Promise<DockerfileSolve> {
  const env = input.env ?? process.env;
  const temps: string[] = [];
  let ssh: SshAgents | undefined;
  const close = async () => {
    await ssh?.close();
    for (const t of temps.splice(0)) await rm(t, { recursive: true, force: true });
  };
  try {
    const attrs: Attrs = {};
    const localDirs: Record<string, string> = {};

    // The context and the Dockerfile.
    let file = flags.file;
    if (input.context === '-') {
      if (file !== undefined && file !== '-') {
        throw new BktError('INVALID_ARGUMENT', 'bkt build: with CONTEXT "-" the Dockerfile is read from stdin; drop -f', { attribute: 'file' });
      }
      const empty = await mkdtemp(join(tmpdir(), 'bkt-context-'));
      temps.push(empty);
      localDirs.context = empty;
      file = '-';
    } else {
      const dir = resolve(input.cwd, input.context);
      if (!existsSync(dir) || !statSync(dir).isDirectory()) {
        throw new BktError('NOT_FOUND', `bkt build: the context ${input.context} is not a directory (${dir})`, { path: dir });
      }
      localDirs.context = dir;
    }
    if (file === '-') {
      const dir = await mkdtemp(join(tmpdir(), 'bkt-dockerfile-'));
      temps.push(dir);
      await writeFile(join(dir, 'Dockerfile'), await readAll(input.stdin));
      localDirs.dockerfile = dir;
      attrs.filename = 'Dockerfile';
    } else {
      const path = file === undefined ? join(localDirs.context!, 'Dockerfile') : resolve(input.cwd, file);
      if (file !== undefined && (!existsSync(path) || statSync(path).isDirectory())) {
        throw new BktError('NOT_FOUND', `bkt build: the Dockerfile ${file} does not exist (${path})`, { path, attribute: 'file' });
      }
      localDirs.dockerfile = dirname(path);
      attrs.filename = basename(path);
    }

    if (flags.target) attrs.target = flags.target;
    const buildArgs = parseBuildArgs(flags.buildArg, env);
    // As buildx: SOURCE_DATE_EPOCH in the environment is the build arg of that name unless one is given.
    if (env.SOURCE_DATE_EPOCH !== undefined && !('SOURCE_DATE_EPOCH' in buildArgs)) buildArgs.SOURCE_DATE_EPOCH = env.SOURCE_DATE_EPOCH;
    for (const [k, v] of Object.entries(buildArgs)) attrs[`build-arg:${k}`] = v;
    for (const [k, v] of Object.entries(parseKeyValues(flags.label, '--label'))) attrs[`label:${k}`] = v;
    for (const value of flags.buildContext) {
      const layout = await ociLayoutContext(value, input.cwd);
      if (layout) {
        attrs[`context:${layout.name}`] = layout.attr;
        localDirs[layout.store] = layout.dir;
        continue;
      }
      const { name, target, local } = parseBuildContext(value, input.cwd);
      if (local) {
        attrs[`context:${name}`] = `local:${name}`;
        localDirs[name] = target;
      } else {
        attrs[`context:${name}`] = target;
      }
    }
    if (flags.platform) attrs.platform = flags.platform;
    if (flags.pull) attrs['image-resolve-mode'] = 'pull';
    if (!flags.cache) attrs['no-cache'] = '';
    else if (flags.noCacheFilter.length > 0) attrs['no-cache'] = flags.noCacheFilter.flatMap((s) => s.split(',')).filter(Boolean).join(',');
    if (flags.addHost.length > 0) attrs['add-hosts'] = flags.addHost.map(parseAddHost).join(',');
    if (flags.shmSize !== undefined) attrs['shm-size'] = String(parseShmSize(flags.shmSize));
    if (flags.ulimit.length > 0) attrs.ulimit = flags.ulimit.join(',');
    if (flags.network !== undefined) {
      const mode = flags.network === 'default' ? 'sandbox' : flags.network;
      if (!['sandbox', 'none', 'host'].includes(mode)) {
        throw new BktError('INVALID_ARGUMENT', `--network ${flags.network}: expected default, none or host`, { attribute: 'network' });
      }
      attrs['force-network-mode'] = mode;
    }

    for (const [k, v] of Object.entries(parseKeyValues(flags.opt ?? [], '--opt'))) attrs[k] = v;
    const frontend = flags.frontend ?? 'dockerfile.v0';
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(frontend)) {
      throw new BktError('INVALID_ARGUMENT', `--frontend ${frontend}: expected a frontend name such as dockerfile.v0 or gateway.v0`, { attribute: 'frontend' });
    }
    if (frontend === 'gateway.v0' && !attrs.source) {
      throw new BktError('INVALID_ARGUMENT', '--frontend gateway.v0 needs the frontend image: --opt source=IMAGE', { attribute: 'opt' });
    }

    const entitlements = parseEntitlements(flags.allow);

    const secrets = await loadSecrets(
      flags.secret.map((s) => parseSecret(s, input.cwd, env)),
      env,
    );
    ssh = await openSshAgents(
      flags.ssh.map((s) => parseSsh(s, input.cwd)),
      env,
    );
    return { frontend, frontendAttrs: attrs, localDirs, entitlements, secrets, ssh, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** `--build-arg K=V`; `--build-arg K` takes K's value from the environment and is dropped when K is unset (as docker). */
export function parseBuildArgs(values: string[], env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    const key = eq < 0 ? v : v.slice(0, eq);
    if (!key) throw new BktError('INVALID_ARGUMENT', `--build-arg ${v}: expected KEY=VALUE or KEY`, { attribute: 'build-arg' });
    if (eq >= 0) out[key] = v.slice(eq + 1);
    else if (env[key] !== undefined) out[key] = env[key]!;
  }
  return out;
}

function parseKeyValues(values: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq === 0) throw new BktError('INVALID_ARGUMENT', `${flag} ${v}: expected KEY=VALUE`, { attribute: flag.slice(2) });
    if (eq < 0) out[v] = '';
    else out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

/**
 * `--build-context NAME=VALUE`: a URL (`docker-image://`, `oci-layout://`,
 * `https://`, `git://`, …), `target:…` or `git@host:repo` passes through as
 * it is; anything else must be a local directory.
 */
export function parseBuildContext(value: string, cwd: string): { name: string; target: string; local: boolean } {
  const eq = value.indexOf('=');
  if (eq <= 0 || eq === value.length - 1) {
    throw new BktError('INVALID_ARGUMENT', `--build-context ${value}: expected NAME=VALUE`, { attribute: 'build-context' });
  }
  const name = value.slice(0, eq);
  const target = value.slice(eq + 1);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target) || target.startsWith('target:') || /^git@[^:/]+:/.test(target)) {
    return { name, target, local: false };
  }
  const dir = resolve(cwd, target);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new BktError('NOT_FOUND', `--build-context ${value}: ${target} is neither a directory nor a docker-image://, oci-layout://, git or https reference`, {
      attribute: 'build-context',
      path: dir,
    });
  }
  return { name, target: dir, local: true };
}

/** `--add-host HOST:IP` (or `HOST=IP`) → the `add-hosts` attr's `HOST=IP`. */
export function parseAddHost(value: string): string {
  // The separator is the first `=` or, failing that, the first `:` (an IPv6 address holds colons).
  const eq = value.indexOf('=');
  const sep = eq >= 0 ? eq : value.indexOf(':');
  if (sep <= 0 || sep === value.length - 1) {
    throw new BktError('INVALID_ARGUMENT', `--add-host ${value}: expected HOST:IP`, { attribute: 'add-host' });
  }
  let ip = value.slice(sep + 1);
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  return `${value.slice(0, sep)}=${ip}`;
}

function parseShmSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)\s*$/i.exec(text);
  if (!m) throw new BktError('INVALID_ARGUMENT', `--shm-size ${text}: expected a size such as 64m or 1g`, { attribute: 'shm-size' });
  const unit = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase()]!;
  return Math.floor(Number(m[1]) * unit);
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}
