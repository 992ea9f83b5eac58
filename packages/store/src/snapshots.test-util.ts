/** Helpers for this package's tests (never exported). */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Snapshot } from '@bkt/core';

/** Commits a snapshot over `parent` holding `files` (path → content) on top of it. */
export async function commitFiles(
  snapshotter: { prepare(parent: Snapshot | null): Promise<{ path: string; commit(): Promise<Snapshot> }> },
  parent: Snapshot | null,
  files: Record<string, string>,
): Promise<Snapshot> {
  const m = await snapshotter.prepare(parent);
  for (const [p, data] of Object.entries(files)) {
    await mkdir(dirname(join(m.path, p)), { recursive: true });
    await writeFile(join(m.path, p), data);
  }
  return m.commit();
}
