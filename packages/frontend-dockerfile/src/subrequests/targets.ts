/**
 * `frontend.targets`: every stage of the Dockerfile with its description (a
 * `# name description` comment above its FROM), the last one marked as the
 * default, as BuildKit's dockerfile2llb `ListTargets`.
 */
import type { Dockerfile } from '../parser/dockerfile.js';
import { sourceLocation, type SourceLocation } from './results.js';
import { table } from './text.js';

export interface Target {
  name?: string;
  default?: boolean;
  description?: string;
  base?: string;
  platform?: string;
  location?: SourceLocation;
}

/** BuildKit's `targets.List`. */
export interface TargetList {
  targets: Target[];
  /** The Dockerfile, base64. */
  sources: string[];
}

export function dockerfileTargets(df: Dockerfile, text: string): TargetList {
  const last = df.stages.length - 1;
  return {
    targets: df.stages.map((s, i) => ({
      ...(s.name ? { name: s.name } : {}),
      ...(i === last ? { default: true } : {}),
      ...(s.from.docComment ? { description: s.from.docComment } : {}),
      base: s.baseName,
      ...(s.platform ? { platform: s.platform } : {}),
      location: sourceLocation(s.range.startLine, s.range.endLine),
    })),
    sources: [Buffer.from(text).toString('base64')],
  };
}

/** The list as buildx prints it (BuildKit's `targets.PrintTargets`). */
export function printTargets(list: TargetList): string {
  const rows = list.targets.map((t) => {
    const name = !t.name && t.default ? '(default)' : t.default ? `${t.name} (default)` : (t.name ?? '');
    return [name, t.description ?? ''];
  });
  return table([['TARGET', 'DESCRIPTION'], ...rows], 1);
}
