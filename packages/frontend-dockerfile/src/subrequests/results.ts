/**
 * BuildKit's frontend subrequests (the `requestid` attr): the request ids
 * this frontend answers, and how an answer travels — no filesystem, result
 * metadata `result.json` (BuildKit's JSON), `result.txt` (the text buildx
 * prints), `version`, and for lint `result.statuscode` (`1` when anything
 * was found).
 */
import type { BuildResult } from '@bkt/core';

export const SUBREQUESTS = {
  outline: 'frontend.outline',
  targets: 'frontend.targets',
  lint: 'frontend.lint',
} as const;

export type SubrequestId = (typeof SUBREQUESTS)[keyof typeof SUBREQUESTS];

export function isSubrequestId(id: string): id is SubrequestId {
  return (Object.values(SUBREQUESTS) as string[]).includes(id);
}

/** A place in the Dockerfile, as `pb.Location` marshals to JSON. */
export interface SourceLocation {
  sourceIndex: number;
  ranges: { start: { line: number }; end: { line: number } }[];
}

export function sourceLocation(startLine: number, endLine: number): SourceLocation {
  return { sourceIndex: 0, ranges: [{ start: { line: startLine }, end: { line: endLine } }] };
}

/** A subrequest's answer as a build result. */
export function subrequestResult(json: unknown, text: string, extra: Record<string, string> = {}): BuildResult {
  const encode = (s: string) => new TextEncoder().encode(s);
  const metadata: Record<string, Uint8Array> = {
    'result.json': encode(JSON.stringify(json, null, 2)),
    'result.txt': encode(text),
    version: encode('1.0.0'),
  };
  for (const [k, v] of Object.entries(extra)) metadata[k] = encode(v);
  return { ref: null, metadata };
}
