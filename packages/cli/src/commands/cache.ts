/**
 * `bkt cache inspect REF`: the records of a cache — a registry cache (either
 * container, BuildKit's or bkt's), an image carrying an inline cache, or a
 * local cache directory (`type=local,src=DIR[,tag=T]`) — with each record's
 * results (their layer blobs) and inputs. Reads only manifests and configs.
 */
import { BktError } from '@bkt/core';
import { localCacheDirName, readLayoutCache, readRegistryCache, recordResults, type CacheConfig } from '@bkt/cache-registry';
import { createHostClient } from '@bkt/fsutil';
import { parseReference } from '@bkt/oci';
import { dockerConfigCredentials, RegistryClient } from '@bkt/registry';
import { parseCacheSpec } from '../cache-flags.js';
import type { Output } from '../progress/displays.js';
import { terminalSafe } from '../progress/terminal-safe.js';
import { resolve } from 'node:path';

export interface CacheInspectOptions {
  format?: string;
  /** Plain HTTP / self-signed TLS for the registry (as `registry.insecure=true`). */
  insecure?: boolean;
}

interface Described {
  source: string;
  manifest?: string;
  inline: boolean;
  layers: { blob: string; parent: number; mediaType?: string; diffID?: string; size?: number }[];
  records: { digest: string; results: string[][]; inputs: { digest: string; selector?: string }[][] }[];
}

function describe(source: string, config: CacheConfig, manifest: string | undefined, inline: boolean): Described {
  return {
    source,
    ...(manifest ? { manifest } : {}),
    inline,
    layers: config.layers.map((l) => ({ blob: l.blob, parent: l.parent, ...(l.annotations ?? {}) })),
    records: config.records.map((r, i) => ({
      digest: r.digest,
      results: recordResults(config, i).map((res) => res.layers.map((l) => config.layers[l].blob)),
      inputs: r.inputs.map((alts) => alts.map((a) => ({ digest: config.records[a.link].digest, ...(a.selector ? { selector: a.selector } : {}) }))),
    })),
  };
}

export async function cacheInspectCommand(ref: string, opts: CacheInspectOptions, out: Output, cwd: string, signal: AbortSignal): Promise<number> {
  const format = opts.format ?? 'text';
  if (format !== 'text' && format !== 'json') throw new BktError('INVALID_ARGUMENT', `--format ${format}: expected text or json`, { attribute: 'format' });
  const entry = parseCacheSpec('--cache-from', ref);
  let described: Described;
  if (entry.type === 'registry') {
    const r = entry.attrs.ref;
    if (!r) throw new BktError('INVALID_ARGUMENT', `bkt cache inspect ${ref}: ref is required`, { attribute: 'ref' });
    const insecure = opts.insecure || entry.attrs['registry.insecure'] === 'true';
    const host = parseReference(r).registry;
    const client = new RegistryClient({ credentials: dockerConfigCredentials(), ...(insecure ? { hosts: { [host]: { http: true, insecure: true } } } : {}) });
    try {
      const c = await readRegistryCache(client, r, { signal });
      described = describe(r, c.config, c.manifest.digest, c.inline);
    } finally {
      client.close();
    }
  } else if (entry.type === 'local') {
    const src = entry.attrs.src;
    if (!src) throw new BktError('INVALID_ARGUMENT', `bkt cache inspect ${ref}: src is required`, { attribute: 'src' });
    const dir = resolve(cwd, src);
    const name = localCacheDirName(dir);
    const client = createHostClient({ localDirs: { [name]: dir } });
    const c = await readLayoutCache(client.localDir(name)!, { tag: entry.attrs.tag ?? 'latest', ...(entry.attrs.digest ? { digest: entry.attrs.digest } : {}) }, `local cache ${dir}`, signal);
    described = describe(dir, c.config, c.manifest.digest, false);
  } else {
    throw new BktError('INVALID_ARGUMENT', `bkt cache inspect ${ref}: type=${entry.type} cannot be read (registry or local; an inline cache is read from its image: REF)`, { attribute: 'type' });
  }
  if (format === 'json') {
    out.write(`${JSON.stringify(described, null, 2)}\n`);
    return 0;
  }
  const short = (d: string) => d.replace(/^sha256:/, '').slice(0, 12);
  const withResults = described.records.filter((r) => r.results.length > 0).length;
  out.write(`Cache:    ${terminalSafe(described.source)}${described.inline ? ' (inline, in the image config)' : ''}\n`);
  if (described.manifest) out.write(`Manifest: ${described.manifest}\n`);
  out.write(`Layers:   ${described.layers.length}\n`);
  out.write(`Records:  ${described.records.length} (${withResults} with results)\n\n`);
  out.write('RECORD        RESULT LAYERS                          INPUTS\n');
  for (const r of described.records) {
    const result = r.results.length === 0 ? '-' : r.results.map((layers) => (layers.length === 0 ? '(empty)' : layers.map(short).join('>'))).join(' | ');
    const inputs = r.inputs.length === 0 ? '-' : r.inputs.map((alts) => alts.map((a) => short(a.digest)).join('|')).join(', ');
    out.write(`${short(r.digest)}  ${result.padEnd(38)}  ${inputs}\n`);
  }
  return 0;
}
