/**
 * The `https` / `http` source (BuildKit's `source/http`): `https://host/path`
 * is one file downloaded into an otherwise empty snapshot.
 *
 * Attrs: `http.checksum` (`sha256:…`: the download must match), `http.filename`
 * (default: the last segment of the URL path, else `index`), `http.perm`
 * (octal, default 0600), `http.uid` / `http.gid`, `http.authheadersecret`
 * (a secret id holding an `Authorization` value), `http.header.accept`,
 * `http.header.user-agent`.
 *
 * The cache key is the content digest with the file's name, mode and owner:
 * a URL whose content did not change hits the cache. The body is downloaded
 * once per build, to a temp file in the store, verified, then moved into the
 * snapshot.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, chown, copyFile, mkdir, rename, rm, utimes } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BktError, requireRecords, type Attrs, type BuildContext, type Digest, type Platform, type Snapshot, type Source, type SourceIdentifier, type SourceInstance } from '@bkt/core';

interface HttpAttrs {
  checksum?: Digest;
  filename?: string;
  perm: number;
  uid: number;
  gid: number;
  authHeaderSecret?: string;
  headers: Record<string, string>;
}

const KNOWN = new Set(['http.checksum', 'http.filename', 'http.perm', 'http.uid', 'http.gid', 'http.authheadersecret', 'http.header.accept', 'http.header.user-agent']);

function parseAttrs(url: string, attrs: Attrs): HttpAttrs {
  const bad = (attr: string, why: string) => new BktError('INVALID_ARGUMENT', `http source ${url}: ${attr}: ${why}`, { attribute: attr });
  for (const k of Object.keys(attrs)) if (k.startsWith('http.') && !KNOWN.has(k)) throw bad(k, 'unknown attribute');
  const out: HttpAttrs = { perm: 0o600, uid: 0, gid: 0, headers: {} };
  const checksum = attrs['http.checksum'];
  if (checksum !== undefined) {
    if (!/^sha256:[0-9a-f]{64}$/.test(checksum)) throw bad('http.checksum', `"${checksum}" is not a sha256 digest`);
    out.checksum = checksum as Digest;
  }
  const filename = attrs['http.filename'];
  if (filename !== undefined && filename !== '') {
    if (filename.includes('/') || filename === '.' || filename === '..') throw bad('http.filename', `"${filename}" is not a file name`);
    out.filename = filename;
  }
  if (attrs['http.perm'] !== undefined) {
    if (!/^0?[0-7]{1,4}$/.test(attrs['http.perm'])) throw bad('http.perm', `"${attrs['http.perm']}" is not an octal mode`);
    out.perm = Number.parseInt(attrs['http.perm'], 8);
  }
  for (const k of ['uid', 'gid'] as const) {
    const v = attrs[`http.${k}`];
    if (v === undefined) continue;
    if (!/^\d+$/.test(v)) throw bad(`http.${k}`, `"${v}" is not a number`);
    out[k] = Number(v);
  }
  if (attrs['http.authheadersecret']) out.authHeaderSecret = attrs['http.authheadersecret'];
  if (attrs['http.header.accept']) out.headers.accept = attrs['http.header.accept'];
  if (attrs['http.header.user-agent']) out.headers['user-agent'] = attrs['http.header.user-agent'];
  return out;
}

/** BuildKit's file name for a URL: the last path segment, else `index`. */
function filenameOf(url: string): string {
  const path = new URL(url).pathname;
  const base = posix.basename(decodeURIComponent(path));
  return base && base !== '/' && base !== '.' && base !== '..' ? base : 'index';
}

/** A download in the store's temp area: its path, digest and Last-Modified. */
interface Download {
  path: string;
  digest: Digest;
  lastModified?: Date;
}

/**
 * The `http`/`https` source. A download is a temp file of the store, moved
 * into the snapshot; one a cache hit left unused is removed when the build
 * finishes (`onFinish`).
 */
export function createHttpSource(): Source {
  return {
    schemes: ['https', 'http'],
    identify(scheme: string, ref: string, attrs: Attrs, platform?: Platform): SourceIdentifier {
      const url = `${scheme}://${ref.replace(/^\/\//, '')}`;
      try {
        new URL(url);
      } catch {
        throw new BktError('INVALID_ARGUMENT', `http source: "${url}" is not a URL`, { attribute: 'identifier' });
      }
      parseAttrs(url, attrs);
      return { scheme, ref: url, attrs, platform };
    },
    async resolve(id: SourceIdentifier): Promise<SourceInstance> {
      const url = id.ref;
      const opts = parseAttrs(url, id.attrs);
      const filename = opts.filename ?? filenameOf(url);
      let download: Promise<Download> | undefined;
      const fetchOnce = (ctx: BuildContext) =>
        (download ??= fetchTo(url, opts, ctx).then((d) => {
          ctx.onFinish(() => rm(d.path, { force: true }));
          return d;
        }));
      const keyOf = (d: Digest) =>
        `sha256:${createHash('sha256').update(JSON.stringify({ filename, perm: opts.perm, uid: opts.uid, gid: opts.gid, checksum: d })).digest('hex')}`;
      return {
        async cacheKey(ctx) {
          const d = await fetchOnce(ctx);
          return { key: keyOf(d.digest) };
        },
        async snapshot(ctx): Promise<Snapshot> {
          const d = await fetchOnce(ctx);
          const mutable = await ctx.snapshotter.prepare(null, { description: `http source ${url}` });
          try {
            const dest = join(mutable.path, filename);
            await moveFile(d.path, dest);
            await chown(dest, opts.uid, opts.gid);
            await chmod(dest, opts.perm);
            if (d.lastModified) await utimes(dest, d.lastModified, d.lastModified);
          } catch (err) {
            await mutable.discard();
            throw err;
          }
          return mutable.commit();
        },
      };
    },
  };
}

/** Renames, or copies and removes across file systems (the snapshot may be a mount). */
async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await copyFile(from, to);
    await rm(from, { force: true });
  }
}

/** Downloads `url` to a temp file of the store, verifying `http.checksum`. */
async function fetchTo(url: string, opts: HttpAttrs, ctx: BuildContext): Promise<Download> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.authHeaderSecret) {
    const v = await ctx.secrets.get(opts.authHeaderSecret);
    if (v) headers.authorization = new TextDecoder().decode(v);
  }
  let res: Response;
  try {
    res = await fetch(url, { headers, signal: ctx.signal, redirect: 'follow' });
  } catch (err) {
    if (ctx.signal.aborted) throw new BktError('CANCELLED', `download of ${url} cancelled`);
    throw new BktError('NOT_FOUND', `failed to download ${url}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`, {
      attribute: 'url',
    });
  }
  if (!res.ok || !res.body) throw new BktError('NOT_FOUND', `failed to download ${url}: HTTP ${res.status} ${res.statusText}`, { attribute: 'url' });
  const path = requireRecords(ctx, '@bkt/source-http').tempPath('http');
  await mkdir(dirname(path), { recursive: true });
  const hash = createHash('sha256');
  let size = 0;
  const total = Number(res.headers.get('content-length') ?? 0);
  try {
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      size += chunk.length;
      ctx.progress.status(`downloading ${url}`, `downloading ${url}`, size, total);
    });
    await pipeline(body, createWriteStream(path, { mode: 0o600 }), { signal: ctx.signal });
  } catch (err) {
    await rm(path, { force: true });
    if (ctx.signal.aborted) throw new BktError('CANCELLED', `download of ${url} cancelled`);
    throw new BktError('INTERNAL', `failed to download ${url}: ${(err as Error).message}`, { attribute: 'url' });
  }
  ctx.progress.status(`downloading ${url}`, `downloading ${url}`, size, total || size, true);
  const digest = `sha256:${hash.digest('hex')}` as Digest;
  if (opts.checksum && digest !== opts.checksum) {
    await rm(path, { force: true });
    throw new BktError('INVALID_ARGUMENT', `digest mismatch for ${url}: expected ${opts.checksum}, got ${digest}`, { attribute: 'http.checksum' });
  }
  const lm = res.headers.get('last-modified');
  const lastModified = lm ? new Date(lm) : undefined;
  return { path, digest, ...(lastModified && !Number.isNaN(lastModified.getTime()) ? { lastModified } : {}) };
}
