/**
 * The `git` source (BuildKit's `source/git`): `git://HOST/PATH[#REF[:SUBDIR]]`
 * is a checkout of REF (a branch, tag or commit; default: the remote's HEAD)
 * of the repository at `git.fullurl`, narrowed to SUBDIR.
 *
 * Attrs: `git.fullurl` (the URL given to git; default `https://HOST/PATH`),
 * `git.keepgitdir` (keep `.git`, with `origin` set to the URL), `git.checksum`
 * (the commit REF must resolve to), `git.skipsubmodules`, `git.authtokensecret`
 * / `git.authheadersecret` (secret ids for HTTP auth; used when the build has
 * them), `git.mtime` (`checkout`, or `commit`: every file gets the commit time).
 * SSH remotes (`git.mountsshsock`, `git.knownsshhosts`) are refused with a clear error.
 *
 * The cache key is the resolved commit with the subdir and options: a ref
 * that still points at the same commit hits the cache.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, lstat, mkdir, readdir, realpath, rm, utimes } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { BktError, requireRecords, type Attrs, type BuildContext, type Platform, type Snapshot, type Source, type SourceIdentifier, type SourceInstance } from '@bkt/core';

interface GitSpec {
  url: string;
  ref: string;
  subdir: string;
  keepGitDir: boolean;
  checksum?: string;
  skipSubmodules: boolean;
  mtime: 'checkout' | 'commit';
  authTokenSecret: string;
  authHeaderSecret: string;
}

function parseSpec(ref: string, attrs: Attrs): GitSpec {
  const id = ref.replace(/^\/\//, '');
  const hash = id.indexOf('#');
  const location = hash < 0 ? id : id.slice(0, hash);
  const fragment = hash < 0 ? '' : id.slice(hash + 1);
  const colon = fragment.indexOf(':');
  const gitRef = colon < 0 ? fragment : fragment.slice(0, colon);
  const subdir = (colon < 0 ? '' : fragment.slice(colon + 1)).replace(/^\/+|\/+$/g, '');
  const url = attrs['git.fullurl'] || `https://${location}`;
  if (/^ssh:\/\//.test(url) || /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!\/\/)/.test(url) || attrs['git.mountsshsock']) {
    throw new BktError('UNIMPLEMENTED', `git source ${url}: SSH remotes are not supported yet; use an https:// or git:// URL`, { attribute: 'git.fullurl' });
  }
  if (subdir.split('/').includes('..')) throw new BktError('INVALID_ARGUMENT', `git source ${url}: subdir "${subdir}" leaves the repository`, { attribute: 'subdir' });
  const mtime = attrs['git.mtime'] || 'checkout';
  if (mtime !== 'checkout' && mtime !== 'commit') throw new BktError('INVALID_ARGUMENT', `git source ${url}: git.mtime: "${mtime}" (checkout or commit)`, { attribute: 'git.mtime' });
  return {
    url,
    ref: gitRef,
    subdir,
    keepGitDir: attrs['git.keepgitdir'] === 'true',
    ...(attrs['git.checksum'] ? { checksum: attrs['git.checksum'] } : {}),
    skipSubmodules: attrs['git.skipsubmodules'] === 'true',
    mtime,
    authTokenSecret: attrs['git.authtokensecret'] || 'GIT_AUTH_TOKEN',
    authHeaderSecret: attrs['git.authheadersecret'] || 'GIT_AUTH_HEADER',
  };
}

/** Environment that keeps git from reading the host's config or prompting. */
const GIT_ENV = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  GIT_TERMINAL_PROMPT: '0',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  HOME: '/nonexistent',
  GIT_PROTOCOL_FROM_USER: '0',
};

function git(args: string[], opts: { cwd?: string; signal?: AbortSignal; config?: string[] } = {}): Promise<string> {
  const configArgs = (opts.config ?? []).flatMap((c) => ['-c', c]);
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      [...configArgs, ...args],
      { cwd: opts.cwd, env: GIT_ENV, signal: opts.signal, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          const msg = (stderr || err.message).trim().split('\n').slice(-3).join(' ');
          reject(new BktError(opts.signal?.aborted ? 'CANCELLED' : 'INTERNAL', `git ${args[0]}: ${msg}`));
        } else resolve(stdout);
      },
    );
  });
}

/** `-c http.extraHeader=…` from the build's auth secrets, when it has them (never logged). */
async function authConfig(spec: GitSpec, ctx: BuildContext): Promise<string[]> {
  if (!/^https?:\/\//.test(spec.url)) return [];
  const header = await ctx.secrets.get(spec.authHeaderSecret);
  if (header) return [`http.extraHeader=Authorization: ${new TextDecoder().decode(header)}`];
  const token = await ctx.secrets.get(spec.authTokenSecret);
  if (token) return [`http.extraHeader=Authorization: basic ${Buffer.from(`x-access-token:${new TextDecoder().decode(token)}`).toString('base64')}`];
  return [];
}

/** The commit `spec.ref` names on the remote (a full commit id is taken as it is). */
async function resolveCommit(spec: GitSpec, ctx: BuildContext, config: string[]): Promise<string> {
  if (/^[0-9a-f]{40}$/.test(spec.ref)) return spec.ref;
  const want = spec.ref || 'HEAD';
  const out = await git(['ls-remote', '--', spec.url, want, `refs/tags/${want}^{}`], { signal: ctx.signal, config }).catch((err: BktError) => {
    throw new BktError(err.code, `git source ${spec.url}: ${err.message}`, { attribute: 'git.fullurl' });
  });
  const lines = out.split('\n').filter(Boolean).map((l) => l.split('\t') as [string, string]);
  // Prefer a peeled tag, then an exact ref, then a branch, then any match.
  const pick =
    lines.find(([, r]) => r === `refs/tags/${want}^{}`) ??
    lines.find(([, r]) => r === want) ??
    lines.find(([, r]) => r === `refs/heads/${want}`) ??
    lines.find(([, r]) => r === `refs/tags/${want}`) ??
    lines[0];
  if (!pick) throw new BktError('NOT_FOUND', `git source ${spec.url}: no ref "${want}" on the remote`, { attribute: 'ref' });
  return pick[0];
}

export function createGitSource(): Source {
  return {
    schemes: ['git'],
    identify(scheme: string, ref: string, attrs: Attrs, platform?: Platform): SourceIdentifier {
      parseSpec(ref, attrs);
      return { scheme, ref: ref.replace(/^\/\//, ''), attrs, platform };
    },
    async resolve(id: SourceIdentifier): Promise<SourceInstance> {
      const spec = parseSpec(id.ref, id.attrs);
      let commit: Promise<string> | undefined;
      const commitOf = (ctx: BuildContext) =>
        (commit ??= (async () => {
          const c = await resolveCommit(spec, ctx, await authConfig(spec, ctx));
          if (spec.checksum && !c.startsWith(spec.checksum)) {
            throw new BktError('INVALID_ARGUMENT', `git source ${spec.url}#${spec.ref}: expected checksum ${spec.checksum}, got ${c}`, { attribute: 'git.checksum' });
          }
          return c;
        })());
      return {
        async cacheKey(ctx) {
          const c = await commitOf(ctx);
          const key = createHash('sha256')
            .update(JSON.stringify({ commit: c, subdir: spec.subdir, keepGitDir: spec.keepGitDir, submodules: !spec.skipSubmodules, mtime: spec.mtime }))
            .digest('hex');
          return { key: `sha256:${key}`, pin: c };
        },
        async snapshot(ctx): Promise<Snapshot> {
          return checkout(spec, await commitOf(ctx), ctx);
        },
      };
    },
  };
}

/** Clones `commit` into a temp dir of the store, then copies the (sub)tree into a new snapshot. */
async function checkout(spec: GitSpec, commit: string, ctx: BuildContext): Promise<Snapshot> {
  const config = await authConfig(spec, ctx);
  const tmp = requireRecords(ctx, '@bkt/source-git').tempPath('git');
  await mkdir(tmp, { recursive: true });
  try {
    const work = join(tmp, 'work');
    await git(['init', '-q', work], { signal: ctx.signal });
    await git(['remote', 'add', 'origin', spec.url], { cwd: work, signal: ctx.signal });
    // A commit id may not be advertised: fetch it directly, else everything and look for it.
    // Fetch the commit itself, else the ref naming it (servers may refuse unadvertised ids), else every branch and tag.
    const tryFetch = (...what: string[]) =>
      git(['fetch', '-q', ...what], { cwd: work, signal: ctx.signal, config }).then(
        () => true,
        () => false,
      );
    const fetched =
      (await tryFetch('--depth', '1', '--no-tags', 'origin', commit)) ||
      (!!spec.ref && commit !== spec.ref && (await tryFetch('--depth', '1', '--no-tags', 'origin', spec.ref)));
    if (!fetched) await git(['fetch', '-q', '--tags', 'origin', '+refs/heads/*:refs/remotes/origin/*'], { cwd: work, signal: ctx.signal, config });
    await git(['-c', 'advice.detachedHead=false', 'checkout', '-q', commit], { cwd: work, signal: ctx.signal });
    if (!spec.skipSubmodules && (await exists(join(work, '.gitmodules')))) {
      await git(['submodule', 'update', '--init', '--recursive', '--depth', '1'], { cwd: work, signal: ctx.signal, config });
    }
    if (spec.mtime === 'commit') {
      const when = new Date(Number((await git(['log', '-1', '--format=%ct', commit], { cwd: work })).trim()) * 1000);
      await touchTree(work, when, true);
    }
    if (!spec.keepGitDir) await rm(join(work, '.git'), { recursive: true, force: true });
    else if (spec.ref && !/^[0-9a-f]{40}$/.test(spec.ref)) {
      // As BuildKit: the checkout is on a branch named after the ref when it is one.
      await git(['checkout', '-q', '-B', spec.ref], { cwd: work }).catch(() => undefined);
    }

    // The subdir, symlinks followed, must stay inside the checkout.
    const realWork = await realpath(work);
    const from = spec.subdir ? await realpath(join(realWork, spec.subdir)).catch(() => join(realWork, spec.subdir)) : realWork;
    if (from !== realWork && !from.startsWith(realWork + sep)) {
      throw new BktError('PERMISSION_DENIED', `git source ${spec.url}#${spec.ref}: subdir "${spec.subdir}" leads outside the repository`, { attribute: 'subdir' });
    }
    const st = await lstat(from).catch(() => null);
    if (!st?.isDirectory()) throw new BktError('NOT_FOUND', `git source ${spec.url}#${spec.ref}: subdir "${spec.subdir}" is not a directory of ${commit}`, { attribute: 'subdir' });
    const mutable = await ctx.snapshotter.prepare(null, { description: `git source ${spec.url}#${spec.ref}` });
    try {
      for (const name of await readdir(from)) {
        await cp(join(from, name), join(mutable.path, name), { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
      }
    } catch (err) {
      await mutable.discard();
      throw err;
    }
    return await mutable.commit();
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    () => false,
  );
}

/** Sets every entry's mtime to `when` (the top's `.git` left alone). */
async function touchTree(dir: string, when: Date, top = false): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (top && entry.name === '.git') continue;
    const p = join(dir, entry.name);
    if (entry.isDirectory()) await touchTree(p, when);
    if (!entry.isSymbolicLink()) await utimes(p, when, when);
  }
  await utimes(dir, when, when);
}
