import { BktError, isBktError, readClientFile, type Attrs, type BuildContext, type ClientLocalDir, type Digest, type Frontend, type FrontendBridge, type Platform, type Registries } from '@bkt/core';
import { parseDockerignore } from '@bkt/fsutil';
import * as pb from '@bkt/api/pb';
import { digestOf, DOCKER_HUB, parseReference } from '@bkt/oci';
import { parseDirectives } from './parser/index.js';
import { type FrontendOptions, parseFrontendAttrs } from './convert/attrs.js';
import { type ImageConfigResolver, type ResolveMode, convertDockerfile } from './convert/convert.js';
import { answerSubrequest } from './subrequests/index.js';
import { CONTEXT_INPUT, DOCKERFILE_INPUT, type DockerfileSource, inputDockerfileSource, inputStates, localDockerfileSource } from './inputs.js';

/**
 * The `dockerfile.v0` frontend: reads the Dockerfile from the `dockerfile`
 * client directory, or the frontend input `dockerfile` (see inputs.ts: the
 * inputs `context`, `dockerfile` and `input:NAME` named contexts; attrs as
 * BuildKit's dockerfile frontend: `filename`,
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
      const inputs = inputStates(bridge.inputs ?? {});
      const mainContext = inputs[CONTEXT_INPUT];
      const source = await dockerfileSource(opts, 'dockerfilekey' in attrs, bridge, ctx);
      let text: string;
      let filename: string;
      let excludes: string[];
      // The Dockerfile and the ignore files are asked for at once: each is a round trip to the client through a daemon.
      // A context given as an input is taken as it is: .dockerignore applies to the client's directory only.
      const excluding = mainContext ? Promise.resolve([]) : readExcludes(opts.filename, source, opts.contextKey, ctx);
      excluding.catch(() => {});
      try {
        ({ text, filename } = await readDockerfile(opts.filename, source));
        excludes = await excluding;
      } finally {
        await excluding.catch(() => {});
        await source.release();
      }

      // `# syntax=IMAGE` (or the BUILDKIT_SYNTAX build arg) hands the build to that frontend image, as BuildKit's forwardGateway.
      const syntax = syntaxOf(attrs, text);
      if (syntax) {
        if (isOfficialDockerfileFrontend(syntax.ref)) {
          ctx.progress.log(1, `${syntax.where} ${syntax.ref} is Docker's Dockerfile frontend: building with bkt's built-in dockerfile.v0\n`);
        } else {
          ctx.progress.log(1, `${syntax.where} ${syntax.ref}: forwarding the build to gateway.v0\n`);
          try {
            return await bridge.solveFrontend('gateway.v0', { ...attrs, source: syntax.ref, cmdline: syntax.cmdline }, bridge.inputs ?? {});
          } catch (err) {
            const where = `${filename}:${syntax.line}: ${syntax.where} ${syntax.ref}`;
            if (!isBktError(err)) throw new BktError('INTERNAL', `${where}: ${(err as Error).message ?? String(err)}`, { file: filename, line: syntax.line }, { cause: err });
            if (err.details.file === undefined) {
              err.message = `${where}: ${err.message}`;
              Object.assign(err.details, { file: filename, line: syntax.line });
            }
            throw err;
          }
        }
      }

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
          ...(mainContext ? { mainContext } : {}),
          inputs,
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

/**
 * Where the Dockerfile is: the frontend input `dockerfile` (unless the attrs
 * name a `dockerfilekey` directory, as BuildKit's forceLocalDockerfile), else
 * the client's dockerfile directory, falling back to its context directory.
 */
async function dockerfileSource(opts: FrontendOptions, forceLocal: boolean, bridge: FrontendBridge, ctx: BuildContext): Promise<DockerfileSource> {
  const input = forceLocal ? undefined : bridge.inputs?.[DOCKERFILE_INPUT];
  if (input) return inputDockerfileSource(bridge, DOCKERFILE_INPUT, input);
  const dockerfileDir = ctx.client.localDir(opts.dockerfileKey);
  const dir = dockerfileDir ?? ctx.client.localDir(opts.contextKey);
  if (dir === undefined) {
    const known = ctx.client.localDirNames().sort().join(', ') || 'none';
    const given = Object.keys(bridge.inputs ?? {}).sort().join(', ');
    throw new BktError(
      'INVALID_ARGUMENT',
      `dockerfile.v0: no "${opts.dockerfileKey}" or "${opts.contextKey}" directory was given to the build (local directories: ${known}${given ? `; frontend inputs: ${given}, none named ${DOCKERFILE_INPUT}` : ''})`,
      { attribute: 'dockerfilekey' },
    );
  }
  return localDockerfileSource(dir, dockerfileDir !== undefined, ctx.signal);
}

/** The Dockerfile's text from its source; `Dockerfile` may be spelled `dockerfile`. */
async function readDockerfile(filename: string, source: DockerfileSource): Promise<{ text: string; filename: string }> {
  const candidates = [filename];
  if (baseOf(filename) === 'Dockerfile') candidates.push(filename.replace(/Dockerfile$/, 'dockerfile'));
  for (const name of candidates) {
    const text = await source.read(name);
    if (text !== undefined) return { text, filename: name };
  }
  throw new BktError('NOT_FOUND', `failed to read dockerfile: open ${filename}: no such file or directory (in ${source.description})`, { file: filename, attribute: 'filename' });
}

/** The build arg that names the frontend image instead of the `# syntax=` directive (BuildKit's `keySyntaxArg`). */
export const SYNTAX_BUILD_ARG = 'build-arg:BUILDKIT_SYNTAX';

/**
 * The frontend image a Dockerfile asks for: the `BUILDKIT_SYNTAX` build arg,
 * else the `# syntax=` directive (its first word the image, the whole value
 * the `cmdline`), unless the build is itself a forwarded one (its attrs carry
 * `cmdline`). Undefined: build it here.
 */
export function syntaxOf(attrs: Attrs, text: string): { ref: string; cmdline: string; line: number; where: string } | undefined {
  if ('cmdline' in attrs) return undefined;
  const fromArg = attrs[SYNTAX_BUILD_ARG]?.trim();
  if (fromArg) return { ref: fromArg.split(/\s+/, 1)[0], cmdline: fromArg, line: 1, where: 'BUILDKIT_SYNTAX' };
  const d = parseDirectives(text).find((x) => x.name === 'syntax');
  const value = d?.value.trim();
  if (!d || !value) return undefined;
  return { ref: value.split(/\s+/, 1)[0], cmdline: value, line: d.line, where: '# syntax=' };
}

/** Whether `ref` names Docker's official Dockerfile frontend (`docker/dockerfile`, any tag or digest), which bkt implements itself. */
export function isOfficialDockerfileFrontend(ref: string): boolean {
  try {
    const r = parseReference(ref);
    return r.registry === DOCKER_HUB && r.repository === 'docker/dockerfile';
  } catch {
    return false;
  }
}

/** `<Dockerfile>.dockerignore` next to the Dockerfile wins over the context's `.dockerignore`. */
async function readExcludes(filename: string, source: DockerfileSource, contextKey: string, ctx: BuildContext): Promise<string[]> {
  // Both files are asked for at once; the one next to the Dockerfile wins when it exists.
  const beside = source.dockerfileDir ? source.read(`${filename}.dockerignore`) : Promise.resolve(undefined);
  const ctxDir = ctx.client.localDir(contextKey);
  const inContext = ctxDir === undefined ? Promise.resolve(undefined) : readText(ctxDir, '.dockerignore', ctx.signal);
  inContext.catch(() => {});
  try {
    const text = (await beside) ?? (await inContext);
    return text === undefined ? [] : parseDockerignore(text);
  } finally {
    await inContext.catch(() => {});
  }
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
