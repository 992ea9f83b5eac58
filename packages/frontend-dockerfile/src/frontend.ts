import { BktError, isBktError, readClientFile, type Attrs, type BuildContext, type ClientLocalDir, type Digest, type Frontend, type FrontendBridge, type Platform, type Registries } from '@bkt/core';
import { parseDockerignore } from '@bkt/fsutil';
import * as pb from '@bkt/api/pb';
import { digestOf } from '@bkt/oci';
import { parseFrontendAttrs } from './convert/attrs.js';
import { type ImageConfigResolver, type ResolveMode, convertDockerfile } from './convert/convert.js';
import { answerSubrequest } from './subrequests/index.js';

/**
 * The `dockerfile.v0` frontend: reads the Dockerfile from the `dockerfile`
 * client directory (attrs as BuildKit's dockerfile frontend: `filename`,
 * `target`, `build-arg:*`, `label:*`, `platform`, `context:*`, `no-cache`,
 * `add-hosts`, `shm-size`, `ulimit`, `force-network-mode`, `contextkey`,
 * `dockerfilekey`, `image-resolve-mode`, `hostname`, `cgroup-parent`),
 * converts it to LLB, solves it and returns the result with the image config
 * as `containerimage.config` metadata. Build-check warnings go to
 * `bridge.warn`; a failing op is reported at its Dockerfile line. With a
 * `requestid` attr (BuildKit's subrequests `frontend.outline`,
 * `frontend.targets`, `frontend.lint`) it answers that instead of building:
 * see `subrequests/`.
 */

/** The metadata key the image exporter reads the image config from. */
export const IMAGE_CONFIG_KEY = 'containerimage.config';

/** The `dockerfile.v0` frontend. */
export type DockerfileFrontend = Frontend;

export function dockerfileFrontend(): DockerfileFrontend {
  return {
    name: 'dockerfile.v0',
    async solve(attrs: Attrs, bridge: FrontendBridge, ctx: BuildContext) {
      const opts = parseFrontendAttrs(attrs);
      const { text, filename } = await readDockerfile(opts.filename, opts.dockerfileKey, opts.contextKey, ctx);
      const excludes = await readExcludes(opts.filename, opts.dockerfileKey, opts.contextKey, ctx);

      // Base images' configs through the solver (its `docker-image` source); the pinned ref keeps FROM reproducible.
      const bridgeResolve = bridge.resolveImageConfig?.bind(bridge);
      const resolveImageConfig: ImageConfigResolver | undefined = bridgeResolve
        ? async (ref, o) => {
            const r = await bridgeResolve(ref, { platform: o.platform, resolveMode: o.resolveMode });
            return { ...(r.ref ? { ref: r.ref.replace(/^docker-image:\/\//, '') } : {}), digest: r.digest, config: r.config };
          }
        : undefined;

      const convert = () =>
        convertDockerfile(text, {
          ...opts,
          filename,
          excludes,
          signal: ctx.signal,
          ...(resolveImageConfig ? { resolveImageConfig } : {}),
          readDockerignore: async (name) => {
            const dir = ctx.client.localDir(name);
            return dir && readText(dir, '.dockerignore', ctx.signal);
          },
        });
      if (attrs.requestid) {
        return answerSubrequest(attrs.requestid, {
          text,
          filename,
          buildArgs: opts.buildArgs,
          convert,
          ...(opts.target ? { target: opts.target } : {}),
          ...(opts.targetPlatform ? { targetPlatform: opts.targetPlatform } : {}),
        });
      }
      const converted = await convert();

      // Warnings belong to the Dockerfile, as BuildKit's (which attaches them to the vertex that loaded it).
      const dockerfileVertex = digestOf(new TextEncoder().encode(`dockerfile:${filename}:${text}`));
      for (const w of converted.warnings) {
        const short = `${w.rule}: ${w.message} (line ${w.range.startLine})`;
        bridge.warn(dockerfileVertex, short, [w.description], {
          url: w.url,
          level: 1,
          ranges: [{ start: { line: w.range.startLine, character: 0 }, end: { line: w.range.endLine, character: 0 } }],
        });
      }

      const bytes = pb.Definition.encode(converted.definition).finish();
      let result;
      try {
        result = await bridge.solve(bytes);
      } catch (err) {
        throw withDockerfileLocation(err, converted.definition, filename, converted.dockerfile.lines);
      }
      return {
        ref: result.ref,
        ...(result.refs ? { refs: result.refs } : {}),
        metadata: { ...result.metadata, [IMAGE_CONFIG_KEY]: converted.imageConfig },
      };
    },
  };
}

/** The Dockerfile's text from the dockerfile dir (falling back to the context dir); `Dockerfile` may be spelled `dockerfile`. */
async function readDockerfile(filename: string, dockerfileKey: string, contextKey: string, ctx: BuildContext): Promise<{ text: string; filename: string }> {
  const dir = ctx.client.localDir(dockerfileKey) ?? ctx.client.localDir(contextKey);
  if (dir === undefined) {
    const known = ctx.client.localDirNames().sort().join(', ') || 'none';
    throw new BktError('INVALID_ARGUMENT', `dockerfile.v0: no "${dockerfileKey}" or "${contextKey}" directory was given to the build (local directories: ${known})`, {
      attribute: 'dockerfilekey',
    });
  }
  const candidates = [filename];
  if (baseOf(filename) === 'Dockerfile') candidates.push(filename.replace(/Dockerfile$/, 'dockerfile'));
  for (const name of candidates) {
    const text = await readText(dir, name, ctx.signal);
    if (text !== undefined) return { text, filename: name };
  }
  throw new BktError('NOT_FOUND', `failed to read dockerfile: open ${filename}: no such file or directory (in ${dir.name})`, { file: filename, attribute: 'filename' });
}

/** `<Dockerfile>.dockerignore` next to the Dockerfile wins over the context's `.dockerignore`. */
async function readExcludes(filename: string, dockerfileKey: string, contextKey: string, ctx: BuildContext): Promise<string[]> {
  const dfDir = ctx.client.localDir(dockerfileKey);
  if (dfDir !== undefined) {
    const text = await readText(dfDir, `${filename}.dockerignore`, ctx.signal);
    if (text !== undefined) return parseDockerignore(text);
  }
  const ctxDir = ctx.client.localDir(contextKey);
  if (ctxDir === undefined) return [];
  const text = await readText(ctxDir, '.dockerignore', ctx.signal);
  return text === undefined ? [] : parseDockerignore(text);
}

/** A file of a client directory as text (a final symlink followed inside the directory); undefined when absent. */
async function readText(dir: ClientLocalDir, path: string, signal: AbortSignal): Promise<string | undefined> {
  return (await readClientFile(dir, path, signal))?.toString('utf8');
}

function baseOf(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/**
 * Puts the Dockerfile line of a failed op (from the definition's source
 * locations) in front of its error: `Dockerfile:12: <error>` followed by the
 * instruction's lines, with `details.file`/`line` set. The error is annotated
 * in place, so every holder of it (the solver reports a build's first error)
 * shows the location; it is returned for `throw`.
 */
export function withDockerfileLocation(err: unknown, definition: pb.Definition, filename: string, lines: readonly string[]): unknown {
  if (!isBktError(err)) return err;
  const digest = err.details.opDigest;
  if (typeof digest !== 'string' || err.details.file !== undefined) return err;
  const loc = definition.Source?.locations[digest]?.locations[0]?.ranges[0];
  if (!loc) return err;
  const start = loc.start?.line ?? 0;
  const end = Math.max(start, loc.end?.line ?? start);
  if (start < 1) return err;
  const snippet: string[] = [];
  for (let n = start; n <= end && n <= lines.length; n++) snippet.push(`${String(n).padStart(4)} | ${lines[n - 1]}`);
  err.message = `${filename}:${start}: ${err.message}\n${snippet.join('\n')}`;
  Object.assign(err.details, { file: filename, line: start, ...(end !== start ? { endLine: end } : {}) });
  return err;
}
