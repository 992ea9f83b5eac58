/**
 * The content store: immutable blobs at `content/blobs/sha256/<hex>`.
 * A write goes to `content/ingest/<session>~<random>`, is fsynced, verified,
 * then renamed into place (and the directory fsynced), so a blob path either
 * does not exist or holds exactly the bytes of its digest. Leftover ingest
 * files of a crashed writer are removed when the store next opens.
 *
 * References (`addRef`, kept in the metadata DB's `blob_refs`) say who uses a
 * blob: a snapshot (e.g. the layer it was unpacked from) or a named owner.
 * `Store.prune` removes the blobs nothing references. A blob this session
 * wrote is leased until the store closes, so a prune in another process
 * cannot take it between its write and its first reference.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, rmSync, statSync, utimesSync, type Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { BktError, type BlobOwner, type BlobRef, type ContentStore, type Digest } from '@bkt/core';
import type { MetadataDB } from './metadata.js';

/** A stored blob as `Store.diskUsage` lists it. */
export interface BlobInfo {
  digest: Digest;
  /** Its size in bytes. */
  size: number;
  /** When it was written (its mtime). */
  createdAt: Date;
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** A stored blob younger than this may still be waiting for its directory fsync (another writer's): `write` syncs it. */
const RECENT_BLOB_MS = 10_000;

export class FileContentStore implements ContentStore {
  readonly blobsDir: string;
  readonly ingestDir: string;

  /**
   * `db` holds the references; without it (a bare content store) `addRef`,
   * `removeRef` and `refs` throw. `session` names this store's writes (ingest
   * files, leases); see sessions.ts.
   */
  constructor(
    readonly dir: string,
    private readonly db?: MetadataDB,
    private readonly session = '',
  ) {
    this.blobsDir = join(dir, 'blobs', 'sha256');
    this.ingestDir = join(dir, 'ingest');
  }

  /**
   * Creates the directories and removes partial writes of processes that no
   * longer write: those of sessions `isLive` denies (every one without it).
   */
  async init(isLive: (session: string) => boolean = () => false): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true });
    await mkdir(this.ingestDir, { recursive: true });
    for (const name of await readdir(this.ingestDir)) {
      if (!isLive(name.split('~')[0])) await rm(join(this.ingestDir, name), { recursive: true, force: true });
    }
  }

  async has(digest: Digest): Promise<boolean> {
    checkDigest(digest);
    return stat(this.#blobPath(digest)).then(
      () => true,
      () => false,
    );
  }

  path(digest: Digest): string {
    checkDigest(digest);
    const p = this.#blobPath(digest);
    if (!existsSync(p)) throw new BktError('NOT_FOUND', `blob ${digest} is not in the content store (${this.dir})`, { digest });
    return p;
  }

  async write(
    data: Uint8Array | AsyncIterable<Uint8Array>,
    expected?: Digest,
  ): Promise<{ digest: Digest; size: number }> {
    if (expected !== undefined) checkDigest(expected);
    if (data instanceof Uint8Array) {
      // Bytes in hand (a config, a manifest): a blob already stored is not written, synced and renamed again.
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;
      if (expected !== undefined && expected !== digest) {
        throw new BktError('INVALID_ARGUMENT', `content digest mismatch: expected ${expected}, got ${digest} (${data.length} bytes)`, { digest: expected });
      }
      // Leased first: a prune elsewhere cannot take the blob found between this check and the caller's reference.
      this.db?.addLease(this.session, 'blob', digest);
      const path = this.#blobPath(digest);
      const st: Stats | undefined = statSync(path, { throwIfNoEntry: false });
      if (st?.isFile() && st.size === data.length) {
        // Another writer may have renamed it in without having synced the directory yet: a young blob is synced here.
        // Young by its birth (the writer's temp file), not its mtime, which the line below refreshes on every such write.
        if (Date.now() - (st.birthtimeMs > 0 ? st.birthtimeMs : st.mtimeMs) < RECENT_BLOB_MS) await fsyncDir(this.blobsDir);
        // Written again, as far as a prune of unreferenced blobs (dated by mtime) is concerned.
        const now = new Date();
        utimesSync(path, now, now);
        return { digest, size: data.length };
      }
    }
    const tmp = join(this.ingestDir, `${this.session}~${randomBytes(8).toString('hex')}`);
    const hash = createHash('sha256');
    let size = 0;
    const fh = await open(tmp, 'wx', 0o644);
    // Chunks are written in batches of WRITE_BATCH_BYTES, one batch in flight while the next one fills (and is hashed).
    // A failed batch is recorded at once (no unhandled rejection while the source is awaited) and ends the loop.
    let writing: Promise<void> = Promise.resolve();
    let failure: { error: unknown } | undefined;
    let batch: Uint8Array[] = [];
    let batched = 0;
    const flush = async () => {
      await writing;
      const bufs = batch;
      batch = [];
      batched = 0;
      writing = writeAll(fh, bufs);
      writing.catch((error: unknown) => (failure ??= { error }));
    };
    try {
      const chunks: AsyncIterable<Uint8Array> | Uint8Array[] = data instanceof Uint8Array ? [data] : data;
      for await (const chunk of chunks) {
        if (failure) throw failure.error;
        hash.update(chunk);
        size += chunk.length;
        batch.push(chunk);
        batched += chunk.length;
        if (batched >= WRITE_BATCH_BYTES) await flush();
      }
      if (batch.length > 0) await flush();
      await writing;
      await fh.sync();
    } catch (err) {
      await writing.catch(() => undefined);
      await fh.close();
      await rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    const digest = `sha256:${hash.digest('hex')}` as Digest;
    if (expected !== undefined && expected !== digest) {
      await rm(tmp, { force: true });
      throw new BktError('INVALID_ARGUMENT', `content digest mismatch: expected ${expected}, got ${digest} (${size} bytes)`, {
        digest: expected,
      });
    }
    // Leased before it appears: a prune elsewhere leaves it until this session references it or ends.
    this.db?.addLease(this.session, 'blob', digest);
    await rename(tmp, this.#blobPath(digest));
    await fsyncDir(this.blobsDir);
    return { digest, size };
  }

  async addRef(digest: Digest, owner: BlobOwner): Promise<void> {
    checkDigest(digest);
    // Checked and recorded in one transaction: a prune removes a blob only inside its own.
    this.#refsDB().addBlobRefChecked(digest, owner, () => {
      if (!existsSync(this.#blobPath(digest))) {
        throw new BktError('NOT_FOUND', `blob ${digest} is not in the content store (${this.dir}); write it before referencing it`, { digest });
      }
    });
  }

  async removeRef(digest: Digest, owner: BlobOwner): Promise<void> {
    checkDigest(digest);
    this.#refsDB().removeBlobRef(digest, owner);
  }

  async refs(of: { digest: Digest } | BlobOwner): Promise<BlobRef[]> {
    if ('digest' in of) checkDigest(of.digest);
    return this.#refsDB().blobRefs(of);
  }

  /** Every stored blob. */
  async list(): Promise<BlobInfo[]> {
    const out: BlobInfo[] = [];
    for (const name of await readdir(this.blobsDir)) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const st = await lstat(join(this.blobsDir, name)).catch(() => null);
      if (!st?.isFile()) continue;
      out.push({ digest: `sha256:${name}` as Digest, size: st.size, createdAt: st.mtime });
    }
    return out;
  }

  /** Deletes a blob (prune only: the caller has checked nothing references it). */
  async remove(digest: Digest): Promise<void> {
    checkDigest(digest);
    await rm(this.#blobPath(digest), { force: true });
  }

  /**
   * Deletes a blob unless something references it or another live session
   * leases it, checked and done in one transaction; false when kept.
   */
  removeIfUnused(digest: Digest, isLive: (session: string) => boolean): boolean {
    checkDigest(digest);
    const path = this.#blobPath(digest);
    return this.#refsDB().removeBlobIfUnused(digest, this.session, isLive, () => rmSync(path, { force: true }));
  }

  #refsDB(): MetadataDB {
    if (!this.db) throw new BktError('UNIMPLEMENTED', `content store ${this.dir} was opened without a metadata database: no blob references`);
    return this.db;
  }

  #blobPath(digest: Digest): string {
    return join(this.blobsDir, digest.slice('sha256:'.length));
  }
}

/** How many bytes a content write gathers before writing them (one writev). */
const WRITE_BATCH_BYTES = 1 << 20;

/** Writes `bufs` in order at the file's position, however many calls it takes. */
async function writeAll(fh: FileHandle, bufs: Uint8Array[]): Promise<void> {
  let rest = bufs.filter((b) => b.length > 0);
  while (rest.length > 0) {
    let n = (await fh.writev(rest)).bytesWritten;
    while (rest.length > 0 && n >= rest[0].length) n -= rest.shift()!.length;
    if (n > 0) rest[0] = rest[0].subarray(n);
  }
}

function checkDigest(digest: string): void {
  if (!DIGEST_RE.test(digest)) throw new BktError('INVALID_ARGUMENT', `invalid digest "${digest}" (want sha256:<64 hex>)`);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
