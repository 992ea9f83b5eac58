/**
 * The progress of several config targets built at once, on one display:
 * each target's events with vertex names prefixed `[NAME] ` and vertex
 * digests made the target's own (sha256 of the name and the digest), so the
 * display shows every target's steps under its name, a step two targets
 * share under both.
 */
import { createHash } from 'node:crypto';
import type { Digest, ProgressEvent } from '@bkt/core';

export function targetProgress(name: string, emit: (event: ProgressEvent) => void): (event: ProgressEvent) => void {
  const digests = new Map<Digest, Digest>();
  const own = (d: Digest): Digest => {
    let mapped = digests.get(d);
    if (!mapped) {
      mapped = `sha256:${createHash('sha256').update(`${name}\0${d}`).digest('hex')}`;
      digests.set(d, mapped);
    }
    return mapped;
  };
  const prefix = `[${name}] `;
  return (event) => {
    switch (event.type) {
      case 'vertex':
        return emit({ type: 'vertex', vertex: { ...event.vertex, digest: own(event.vertex.digest), inputs: event.vertex.inputs.map(own), name: prefix + event.vertex.name } });
      case 'status':
        return emit({ type: 'status', status: { ...event.status, vertex: own(event.status.vertex) } });
      case 'log':
        return emit({ type: 'log', log: { ...event.log, vertex: own(event.log.vertex) } });
      case 'warning':
        return emit({ type: 'warning', warning: { ...event.warning, vertex: own(event.warning.vertex) } });
    }
  };
}
