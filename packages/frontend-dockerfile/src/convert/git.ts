/**
 * Git references in ADD sources and named contexts, as BuildKit's
 * frontend/dockerfile/dfgitutil.ParseGitRef reads them:
 * `https://host/repo.git#ref:subdir`, `git://…`, `ssh://…`, `git@host:repo`,
 * with the query options `ref`, `tag`, `branch`, `subdir`, `checksum`
 * (`commit`), `keep-git-dir`, `submodules`. An http(s) URL is a git ref only
 * when its path ends in `.git`.
 */

export interface GitRef {
  /** The URL given to git, without fragment and query. */
  remote: string;
  /** Branch, tag or commit. */
  ref: string;
  subdir: string;
  checksum: string;
  keepGitDir?: boolean;
  submodules?: boolean;
  /** `github.com/…` without a scheme: only a build context may use it. */
  indistinguishableFromLocal: boolean;
}

export type GitRefResult = { isGit: false } | { isGit: true; ref: GitRef } | { isGit: true; error: string };

const SCP_LIKE = /^(?:[A-Za-z0-9._-]+@)[A-Za-z0-9.-]+:(?!\/\/)/;

/** Whether `src` is a git reference, and its parts. */
export function parseGitRef(src: string): GitRefResult {
  if (src.startsWith('./') || src.startsWith('../')) return { isGit: false };
  let indistinguishable = false;
  let url = src;
  if (src.startsWith('github.com/')) {
    indistinguishable = true;
    url = `https://${src}`;
  } else if (SCP_LIKE.test(src)) {
    return scpLike(src);
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1]?.toLowerCase();
  if (!scheme || !['http', 'https', 'git', 'ssh'].includes(scheme)) return { isGit: false };
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { isGit: false };
  }
  if ((scheme === 'http' || scheme === 'https') && !indistinguishable && !u.pathname.endsWith('.git')) return { isGit: false };
  const auth = u.username ? `${u.username}${u.password ? `:${u.password}` : ''}@` : '';
  let remote = `${scheme}://${auth}${u.host}${u.pathname}`;
  if (indistinguishable) remote = remote.slice('https://'.length);
  const fragment = decodeURIComponent(u.hash.replace(/^#/, ''));
  return finish(remote, fragment, u.searchParams, indistinguishable);
}

function scpLike(src: string): GitRefResult {
  const hash = src.indexOf('#');
  const remote = hash < 0 ? src : src.slice(0, hash);
  const fragment = hash < 0 ? '' : src.slice(hash + 1);
  return finish(remote, fragment, new URLSearchParams(), false);
}

function finish(remote: string, fragment: string, query: URLSearchParams, indistinguishable: boolean): GitRefResult {
  const colon = fragment.indexOf(':');
  const ref: GitRef = {
    remote,
    ref: colon < 0 ? fragment : fragment.slice(0, colon),
    subdir: colon < 0 ? '' : fragment.slice(colon + 1),
    checksum: '',
    indistinguishableFromLocal: indistinguishable,
  };
  let tag = '';
  let branch = '';
  const seen = new Set<string>();
  for (const [k, v] of query) {
    if (seen.has(k)) return { isGit: true, error: `query ${JSON.stringify(k)} has multiple values` };
    seen.add(k);
    const flag = k === 'submodules' || k === 'keep-git-dir';
    if (v === '' && !flag) return { isGit: true, error: `query ${JSON.stringify(k)} has no value` };
    switch (k) {
      case 'ref':
        if (ref.ref && ref.ref !== v) return { isGit: true, error: `ref conflicts: ${JSON.stringify(ref.ref)} vs ${JSON.stringify(v)}` };
        ref.ref = v;
        break;
      case 'tag':
        tag = v;
        break;
      case 'branch':
        branch = v;
        break;
      case 'subdir':
        if (ref.subdir && ref.subdir !== v) return { isGit: true, error: `subdir conflicts: ${JSON.stringify(ref.subdir)} vs ${JSON.stringify(v)}` };
        ref.subdir = v;
        break;
      case 'checksum':
      case 'commit':
        ref.checksum = v;
        break;
      case 'keep-git-dir':
      case 'submodules': {
        const b = v === '' ? true : parseBool(v);
        if (b === undefined) return { isGit: true, error: `invalid ${k} value: ${JSON.stringify(v)}` };
        if (k === 'keep-git-dir') ref.keepGitDir = b;
        else ref.submodules = b;
        break;
      }
      default:
        return { isGit: true, error: `unexpected query ${JSON.stringify(k)}` };
    }
  }
  if (tag && branch) return { isGit: true, error: 'branch and tag are mutually exclusive' };
  const named = tag ? `refs/tags/${tag}` : branch ? `refs/heads/${branch}` : '';
  if (named) {
    if (ref.ref && ref.ref !== named) return { isGit: true, error: `ref conflicts: ${JSON.stringify(ref.ref)} vs ${JSON.stringify(named)}` };
    ref.ref = named;
  }
  return { isGit: true, ref };
}

function parseBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(v)) return false;
  return undefined;
}
