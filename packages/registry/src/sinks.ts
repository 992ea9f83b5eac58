/** Ready-made `BlobSink`s. */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { BlobSink } from './client.js';

/**
 * A sink writing to a temporary file beside `path` that becomes `path` (after
 * fsync, by rename) only on `commit()`, i.e. only once the digest matched; on
 * `abort()` the temporary file is removed. `path` never holds partial or
 * unverified bytes.
 */
export function fileSink(path: string): BlobSink {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.partial`);
  let file: FileHandle | undefined;
  return {
    async write(chunk) {
      file ??= await open(temp, 'w', 0o644);
      await file.write(chunk);
    },
    async commit() {
      file ??= await open(temp, 'w', 0o644); // an empty blob
      await file.sync();
      await file.close();
      file = undefined;
      await rename(temp, path);
    },
    async abort() {
      await file?.close().catch(() => {});
      file = undefined;
      await rm(temp, { force: true });
    },
  };
}
