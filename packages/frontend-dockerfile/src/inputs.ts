/**
 * The frontend inputs of a Dockerfile build (`bridge.inputs`: a Solve's
 * FrontendInputs), as BuildKit's dockerfile frontend reads them: the input
 * `context` is the build context (in place of the client's `context`
 * directory), the input `dockerfile` holds the Dockerfile (unless the attrs
 * name a `dockerfilekey` directory), and any input is a named context as
 * `context:NAME=input:INPUT` (with the image config of `input-metadata:INPUT`).
 */
import { readFile } from 'node:fs/promises';
import { BktError, type ClientLocalDir, type FrontendBridge, readClientFile } from '@bkt/core';
import { resolveInRoot } from '@bkt/fsutil';
import * as pb from '@bkt/api/pb';
import { fromDefinition, type State } from '@bkt/llb';

/** The input that is the build context. */
export const CONTEXT_INPUT = 'context';
/** The input that holds the Dockerfile. */
export const DOCKERFILE_INPUT = 'dockerfile';

/** Each input as a state (`INVALID_ARGUMENT` naming one that is not a definition). */
export function inputStates(inputs: Readonly<Record<string, Uint8Array>>): Record<string, State> {
  const out: Record<string, State> = {};
  for (const [name, bytes] of Object.entries(inputs)) {
    try {
      out[name] = fromDefinition(pb.Definition.decode(bytes));
    } catch (err) {
      throw new BktError('INVALID_ARGUMENT', `frontend input ${name}: not a valid LLB definition: ${(err as Error).message}`, { attribute: `input:${name}` });
    }
  }
  return out;
}

/** Where the Dockerfile is read from: a client directory, or a solved frontend input. */
export interface DockerfileSource {
  /** For messages: `the "dockerfile" directory`, `frontend input dockerfile`. */
  readonly description: string;
  /** Whether it is the directory named by `dockerfilekey` (its `<Dockerfile>.dockerignore` applies). */
  readonly dockerfileDir: boolean;
  /** A file's text (a final symlink followed inside the source); undefined when absent. */
  read(path: string): Promise<string | undefined>;
  /** Releases what reading needed (an input's mount). */
  release(): Promise<void>;
}

/** A client directory as a Dockerfile source. */
export function localDockerfileSource(dir: ClientLocalDir, dockerfileDir: boolean, signal: AbortSignal): DockerfileSource {
  return {
    description: `the "${dir.name}" directory`,
    dockerfileDir,
    read: async (path) => (await readClientFile(dir, path, signal))?.toString('utf8'),
    release: async () => {},
  };
}

/** A frontend input solved through the bridge, its result mounted, as a Dockerfile source. */
export async function inputDockerfileSource(bridge: FrontendBridge, name: string, definition: Uint8Array): Promise<DockerfileSource> {
  const result = await bridge.solve(definition);
  const mounted = result.ref ? await result.ref.mount() : undefined;
  return {
    description: `frontend input ${name}`,
    dockerfileDir: true,
    read: async (path) => {
      if (!mounted) return undefined;
      try {
        return await readFile(await resolveInRoot(mounted.path, path), 'utf8');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR') return undefined;
        throw err;
      }
    },
    release: async () => mounted?.release(),
  };
}
