import type * as pb from '@bkt/api/pb';
import type { State } from './state.js';

/** A range in a source file (`pb.Range`); BuildKit frontends use 1-based lines. */
export interface Range {
  start: { line: number; character: number };
  end: { line: number; character: number };
}

/**
 * A source file that ops come from (a Dockerfile, a `bkt.config.ts`), as Go's
 * `llb.SourceMap`. Attach ranges of it to ops with `sourceMap.location(ranges)`
 * in their `sourceLocations` option; `marshal` collects them in `Definition.Source`.
 */
export class SourceMap {
  constructor(
    readonly filename: string,
    readonly language: string = '',
    readonly data: Uint8Array = new Uint8Array(),
    /** A state that produced the file (e.g. the Dockerfile's context), marshalled into the source info. */
    readonly state?: State,
  ) {}

  location(ranges: Range[]): SourceLocation {
    return { sourceMap: this, ranges };
  }
}

export interface SourceLocation {
  sourceMap: SourceMap;
  ranges: Range[];
}

function sameSourceMap(a: SourceMap, b: SourceMap): boolean {
  return (
    a.filename === b.filename &&
    a.language === b.language &&
    a.data.length === b.data.length &&
    a.data.every((v, i) => v === b.data[i]) &&
    a.state === b.state
  );
}

/** Collects the source locations of marshalled ops (Go's `sourceMapCollector`). */
export class SourceMapCollector {
  private readonly maps: SourceMap[] = [];
  private readonly index = new Map<SourceMap, number>();
  private readonly locations = new Map<string, SourceLocation[]>();

  add(digest: string, locs: SourceLocation[]): void {
    for (const l of locs) {
      if (this.index.has(l.sourceMap)) continue;
      let idx = this.maps.findIndex((m) => sameSourceMap(m, l.sourceMap));
      if (idx < 0) {
        idx = this.maps.length;
        this.maps.push(l.sourceMap);
      }
      this.index.set(l.sourceMap, idx);
    }
    if (locs.length > 0) this.locations.set(digest, [...(this.locations.get(digest) ?? []), ...locs]);
  }

  /** The `pb.Source`; `marshalState` marshals a source map's state (with the same options). */
  toPB(marshalState: (s: State) => pb.Definition): pb.Source {
    const infos: pb.SourceInfo[] = this.maps.map((m) => ({
      filename: m.filename,
      data: Buffer.from(m.data),
      definition: m.state ? marshalState(m.state) : undefined,
      language: m.language,
    }));
    const locations: Record<string, pb.Locations> = {};
    for (const digest of [...this.locations.keys()].sort()) {
      locations[digest] = {
        locations: this.locations.get(digest)!.map((l) => ({
          sourceIndex: this.index.get(l.sourceMap)!,
          ranges: l.ranges.map((r) => ({
            start: { line: r.start.line, character: r.start.character },
            end: { line: r.end.line, character: r.end.character },
          })),
        })),
      };
    }
    return { locations, infos };
  }
}
