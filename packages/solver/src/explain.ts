/**
 * Why did a step miss the cache: the plaintext of each step's key is kept
 * per build (store records `build-keys/<build ref>`), and a step that ran is
 * compared with the step of the same name in the previous build of the same
 * target — which file of the context its copy read changed, which build arg
 * or environment variable, which base image digest, which parent step.
 *
 * Nothing secret is kept: environment values and command lines are kept as
 * digests (a change is told by name), build args by name only, source URLs
 * and step names without credentials (`redactCredentials`); secrets never
 * reach a key.
 */
import { createHash } from 'node:crypto';
import { BktError, type StoreRecords } from '@bkt/core';

/** The plaintext of one step's key. */
export interface StepKey {
  /** The op digest. */
  digest: string;
  name: string;
  kind: string;
  /** The canonical key. */
  key: string;
  /** Whether the step ran in this build (not from a cache). */
  ran: boolean;
  /** Its inputs: the step names and their canonical keys. */
  inputs: { name: string; key: string }[];
  /** A source: its identifier and its content key (an image's resolved digest, a context's checksum). */
  source?: { identifier: string; key: string };
  /** An exec op: digests of its command line and of each environment variable's value, by name. */
  exec?: { args: string; env: Record<string, string>; cwd: string };
  /** Inputs read by content (a copy's sources): the paths and their checksums. */
  content?: { input: number; paths: string[]; sums: string[] }[];
}

export interface BuildKeys {
  /** What makes two builds "the same target": the frontend, its Dockerfile and stage, the client's directories. */
  target: string;
  /** The build args the frontend was given (names only). */
  buildArgs: string[];
  createdAt: string;
  steps: StepKey[];
}

export interface StepExplanation {
  step: string;
  /** Plain-words reasons, most specific first. */
  reasons: string[];
  /** The same, structured: `file` (path), `build-arg` / `env` (name), `base-image` (from, to), `parent` (step), `command`, `new-step`, `definition`. */
  causes: { kind: string; name?: string; from?: string; to?: string }[];
}

const NAMESPACE = 'build-keys';
export const digestText = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

/** A query parameter whose value is a credential (a pre-signed URL's signature, an access token). */
const SECRET_PARAM = /^(?:.*token|.*secret|.*password|passwd|.*signature|sig|x-amz-credential|x-amz-security-token|.*api[-_]?key|key|auth.*|credential.*)$/i;

/**
 * `text` without the credentials of the URLs in it: a URL's userinfo
 * (`https://user:token@host/…` → `https://host/…`, also a git remote inside
 * an identifier) is removed and the values of credential-like query
 * parameters (`token`, `sig`, `X-Amz-Signature`, …) become `***`. An image
 * reference's `name@sha256:…` is not a URL's userinfo and is kept.
 */
export function redactCredentials(text: string): string {
  return text.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^\s/?#@]*@)?([^\s?#]*)(\?[^\s#]*)?/g, (all, scheme: string, _userinfo: string | undefined, rest: string, query: string | undefined) => {
    if (/^(docker-image|oci-layout):/i.test(scheme)) return all;
    const q = query?.replace(/([?&])([^=&]*)=([^&]*)/g, (p, sep: string, name: string) => (SECRET_PARAM.test(decodeURIComponentSafe(name)) ? `${sep}${name}=***` : p));
    return `${scheme}${rest}${q ?? ''}`;
  });
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** `keys` without the credentials of source URLs in step names and identifiers (`redactCredentials`). */
export function redactBuildKeys(keys: BuildKeys): BuildKeys {
  return {
    ...keys,
    steps: keys.steps.map((s) => ({
      ...s,
      name: redactCredentials(s.name),
      inputs: s.inputs.map((i) => ({ ...i, name: redactCredentials(i.name) })),
      ...(s.source ? { source: { ...s.source, identifier: redactCredentials(s.source.identifier) } } : {}),
    })),
  };
}

/** Keeps `keys` as the `build.keys` record of build `ref`, without credentials (`redactBuildKeys`). */
export async function saveBuildKeys(records: StoreRecords, ref: string, keys: BuildKeys): Promise<void> {
  keys = redactBuildKeys(keys);
  await records.namespace(NAMESPACE).put(ref, {
    recordType: 'build.keys',
    description: `cache key plaintexts of build ${ref}`,
    data: { target: keys.target, createdAt: keys.createdAt, keys: JSON.stringify(keys) },
  });
}

export async function loadBuildKeys(records: StoreRecords, ref: string): Promise<BuildKeys | undefined> {
  const r = await records.namespace(NAMESPACE).get(ref);
  return r?.data.keys ? (JSON.parse(r.data.keys) as BuildKeys) : undefined;
}

/** The newest build of `target` made before `before` (not `exclude`), with its ref. */
export async function previousBuildKeys(records: StoreRecords, target: string, before: string, exclude: string): Promise<{ ref: string; keys: BuildKeys } | undefined> {
  const all = (await records.namespace(NAMESPACE).list())
    .filter((r) => r.id !== exclude && r.data.target === target && (r.data.createdAt ?? '') < before)
    .sort((a, b) => ((a.data.createdAt ?? '') < (b.data.createdAt ?? '') ? 1 : -1));
  const r = all[0];
  return r?.data.keys ? { ref: r.id, keys: JSON.parse(r.data.keys) as BuildKeys } : undefined;
}

/** The explanations of the steps of `current` that ran, against `previous` (undefined: no previous build of the target). */
export function explainSteps(current: BuildKeys, previous: BuildKeys | undefined): StepExplanation[] {
  const out: StepExplanation[] = [];
  // Steps are matched by their place when the frontend numbers them (`[stage 2/4]`: a build arg may
  // change the rest of the name), else by name without the digests a frontend pins (`FROM img@sha256:…`).
  const nameOf = (s: StepKey) => {
    const place = /^\[([^\]]+ )?\d+\/\d+\]/.exec(s.name);
    return `${s.kind} ${place ? place[0] : s.name.replace(PINNED, '')}`;
  };
  const before = new Map((previous?.steps ?? []).map((s) => [nameOf(s), s]));
  const buildArgs = new Set(current.buildArgs);
  for (const s of current.steps) {
    if (!s.ran) continue;
    const causes: StepExplanation['causes'] = [];
    const p = before.get(nameOf(s));
    if (!previous) causes.push({ kind: 'new-step', name: 'no previous build of this target' });
    else if (!p) causes.push({ kind: 'new-step', name: 'the previous build had no such step' });
    else if (p.key === s.key) causes.push({ kind: 'definition', name: 'same key as before: its cache record is gone (pruned) or the cache was not used (--no-cache)' });
    else {
      if (s.source && p.source) {
        const [name, digest] = splitPinned(s.source.identifier);
        const [wasName, wasDigest] = splitPinned(p.source.identifier);
        if (name === wasName && digest !== wasDigest && s.source.identifier.startsWith('docker-image://')) causes.push({ kind: 'base-image', name, from: wasDigest, to: digest });
        else if (s.source.identifier !== p.source.identifier) causes.push({ kind: 'source', from: p.source.identifier, to: s.source.identifier });
        else if (s.source.key !== p.source.key) {
          causes.push(s.source.identifier.startsWith('docker-image://') ? { kind: 'base-image', from: p.source.key, to: s.source.key } : { kind: 'source-content', name: s.source.identifier });
        }
      }
      if (s.exec && p.exec) {
        for (const name of [...new Set([...Object.keys(s.exec.env), ...Object.keys(p.exec.env)])].sort()) {
          if (s.exec.env[name] !== p.exec.env[name]) causes.push({ kind: buildArgs.has(name) ? 'build-arg' : 'env', name });
        }
        if (s.exec.args !== p.exec.args) causes.push({ kind: 'command' });
        if (s.exec.cwd !== p.exec.cwd) causes.push({ kind: 'workdir' });
      }
      for (const c of s.content ?? []) {
        const pc = p.content?.find((x) => x.input === c.input);
        if (!pc) continue;
        c.paths.forEach((path, i) => {
          const j = pc.paths.indexOf(path);
          if (j < 0 || pc.sums[j] !== c.sums[i]) causes.push({ kind: 'file', name: path.replace(/^\/+/, '') || '.' });
        });
      }
      // A parent step whose key changed (reported when nothing of the step itself explains it, or besides a file).
      if (causes.length === 0 || causes.every((c) => c.kind === 'file')) {
        s.inputs.forEach((inp, i) => {
          const was = p.inputs[i];
          if (was && was.key !== inp.key && !(s.content ?? []).some((c) => c.input === i)) causes.push({ kind: 'parent', name: inp.name });
        });
      }
      if (causes.length === 0) causes.push({ kind: 'definition', name: p.digest === s.digest ? 'its inputs changed' : 'its definition changed' });
    }
    out.push({ step: s.name, causes, reasons: causes.map(words) });
  }
  return out;
}

const PINNED = /@sha256:[0-9a-f]{64}/g;

/** An identifier's name and pinned digest (`docker-image://reg/img:tag@sha256:…`). */
function splitPinned(identifier: string): [string, string | undefined] {
  const m = /^(.*)@(sha256:[0-9a-f]{64})$/.exec(identifier);
  return m ? [m[1], m[2]] : [identifier, undefined];
}

function words(c: StepExplanation['causes'][number]): string {
  switch (c.kind) {
    case 'file':
      return `file ${c.name} of its source changed`;
    case 'build-arg':
      return `build arg ${c.name} changed`;
    case 'env':
      return `environment variable ${c.name} changed`;
    case 'base-image':
      return `base image ${c.name ?? ''} digest changed: ${c.from ?? '(unpinned)'} → ${c.to ?? '(unpinned)'}`.replace('image  digest', 'image digest');
    case 'source':
      return `source changed: ${c.from} → ${c.to}`;
    case 'source-content':
      return `the content of ${c.name} changed`;
    case 'parent':
      return `parent step changed: ${c.name}`;
    case 'command':
      return 'its command changed';
    case 'workdir':
      return 'its working directory changed';
    case 'new-step':
      return `new step (${c.name})`;
    default:
      return c.name ?? 'its definition changed';
  }
}

/**
 * The explanations of build `ref` of a store's history (`bkt history
 * explain`): against the build of the same target before it. `NOT_FOUND`
 * when the store kept no key plaintexts for `ref`.
 */
export async function explainStoredBuild(records: StoreRecords, ref: string): Promise<{ previous?: string; steps: StepExplanation[] }> {
  const keys = await loadBuildKeys(records, ref);
  if (!keys) throw new BktError('NOT_FOUND', `no cache key plaintexts of build ${ref} in the store (kept for builds this store ran, until a prune)`, { ref });
  const previous = await previousBuildKeys(records, keys.target, keys.createdAt, ref);
  return { ...(previous ? { previous: previous.ref } : {}), steps: explainSteps(keys, previous?.keys) };
}
