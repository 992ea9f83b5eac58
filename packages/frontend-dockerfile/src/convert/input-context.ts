/**
 * A named context given as a frontend input (`context:NAME=input:INPUT`, as
 * BuildKit's dockerui namedcontext.go reads it).
 */
import { BktError } from '@bkt/core';
import type { State } from '@bkt/llb';

/**
 * A named context `input:INPUT`: the input's state and, when
 * `input-metadata:INPUT` (JSON of base64 values, as Go marshals a
 * `map[string][]byte`) carries a `containerimage.config`, that config.
 */
export function inputContext(
  name: string,
  input: string,
  states: Readonly<Record<string, State>>,
  metadata: string | undefined,
): { state: State; config?: Uint8Array } {
  const state = states[input];
  if (!state) {
    const known = Object.keys(states).sort().join(', ') || 'none';
    throw new BktError('INVALID_ARGUMENT', `context:${name}: invalid input ${input} (frontend inputs: ${known})`, { attribute: `context:${name}` });
  }
  if (metadata === undefined) return { state };
  let parsed: unknown;
  try {
    parsed = JSON.parse(metadata);
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `input-metadata:${input}: failed to parse input metadata: ${(err as Error).message}`, { attribute: `input-metadata:${input}` });
  }
  const config = (parsed as Record<string, unknown> | null)?.['containerimage.config'];
  if (config === undefined) return { state };
  if (typeof config !== 'string') {
    throw new BktError('INVALID_ARGUMENT', `input-metadata:${input}: containerimage.config must be base64 bytes`, { attribute: `input-metadata:${input}` });
  }
  return { state, config: Buffer.from(config, 'base64') };
}
