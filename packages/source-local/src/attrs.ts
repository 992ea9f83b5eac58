import { BktError, type Attrs } from '@bkt/core';

/** The `local://` source op's attrs, decoded (BuildKit's `llb.Local` options). */
export interface LocalAttrs {
  /** `local.includepattern`: only these paths (and what is under them). */
  include: string[];
  /** `local.excludepatterns`: `.dockerignore`-syntax patterns left out. */
  exclude: string[];
  /** `local.followpaths`: symlinks whose targets are added to the include patterns. */
  followPaths: string[];
  /** `local.differ`: `metadata` (default) or `none`; no effect on content here. */
  differ: 'metadata' | 'none';
}

/** Attrs that are accepted and only influence the op's identity (and so its digest). */
const IDENTITY_ONLY = new Set(['local.session', 'local.sharedkeyhint', 'local.unique', 'local.metadatatransfer']);

function jsonStringArray(attrs: Attrs, key: string): string[] {
  const raw = attrs[key];
  if (raw === undefined || raw === '') return [];
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new BktError('INVALID_ARGUMENT', `local source: attribute ${key} is not JSON: ${JSON.stringify(raw)}`, {
      attribute: key,
    });
  }
  if (value === null) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new BktError('INVALID_ARGUMENT', `local source: attribute ${key} must be a JSON array of strings, got ${raw}`, {
      attribute: key,
    });
  }
  return value;
}

/**
 * Decodes and validates the attrs. An unknown `local.*` attribute is an error
 * naming it; attrs of other namespaces are ignored, as BuildKit ignores them.
 */
export function parseLocalAttrs(attrs: Attrs): LocalAttrs {
  for (const key of Object.keys(attrs)) {
    if (!key.startsWith('local.')) continue;
    if (IDENTITY_ONLY.has(key)) continue;
    if (['local.includepattern', 'local.excludepatterns', 'local.followpaths', 'local.differ'].includes(key)) continue;
    throw new BktError(
      'INVALID_ARGUMENT',
      `local source: unknown attribute "${key}" (known: local.includepattern, local.excludepatterns, local.followpaths, local.differ, ${[...IDENTITY_ONLY].join(', ')})`,
      { attribute: key },
    );
  }
  const differ = attrs['local.differ'] ?? 'metadata';
  if (differ !== 'metadata' && differ !== 'none' && differ !== '') {
    throw new BktError('INVALID_ARGUMENT', `local source: attribute local.differ must be "metadata" or "none", got "${differ}"`, {
      attribute: 'local.differ',
    });
  }
  return {
    include: jsonStringArray(attrs, 'local.includepattern'),
    exclude: jsonStringArray(attrs, 'local.excludepatterns'),
    followPaths: jsonStringArray(attrs, 'local.followpaths'),
    differ: differ === 'none' ? 'none' : 'metadata',
  };
}
