import { BktError, type Pacer } from '@bkt/core';
import { type Steps, runSteps, runStepsPaced } from './steps.js';
import type { Dockerfile, Stage } from './dockerfile.js';
import { locatedError } from './errors.js';
import type { Instruction } from './instructions.js';
import { type EnvGetter, ShellLex, emptyEnv } from './shell.js';
import { suggest } from './suggest.js';

/**
 * The stage graph of a Dockerfile, as BuildKit's dispatcher builds it: what
 * each stage is based on (an earlier stage or an image), which stages its
 * `COPY --from` and `RUN --mount=from=` read, which one is the target, and
 * only the stages the target needs. Cycles and bad references are errors at
 * the instruction that makes them.
 */

export type StageBase = { kind: 'stage'; index: number } | { kind: 'image'; ref: string } | { kind: 'scratch' };

export interface StageDependency {
  /** The stage read from. */
  index: number;
  /** The instruction that reads it (FROM for the base stage). */
  instruction: Instruction;
}

export interface ResolvedStage {
  stage: Stage;
  /** The base name with global ARGs substituted. */
  baseName: string;
  base: StageBase;
  /** Stages this one needs: its base stage, then `COPY --from` / `RUN --mount from` stages. */
  dependencies: StageDependency[];
  /** Images (not stages) named by `COPY --from` or `RUN --mount=from=`. */
  images: string[];
}

export interface StageGraph {
  stages: ResolvedStage[];
  /** The index of the target stage. */
  target: number;
  /** The target and every stage it needs, dependencies first. */
  order: number[];
}

export interface ResolveOptions {
  /** Global ARG values (predefined platform args and meta ARGs) for FROM. */
  globalArgs?: EnvGetter;
  /** `--target`; default the last stage. */
  target?: string;
}

/**
 * The longest chain of stages each built FROM the one before. Each stage of
 * a chain starts from a copy of its base's image config, whose environment
 * grows along the chain, so conversion cost grows with the square of the
 * chain's length; 3,000 is far beyond real Dockerfiles (a few stages) and
 * converts in seconds. BuildKit has no limit (and the same growth).
 */
export const MAX_STAGE_CHAIN = 3_000;

export function resolveStages(df: Dockerfile, options: ResolveOptions = {}): StageGraph {
  return runSteps(resolveStageSteps(df, options));
}

/** `resolveStages` that pauses with `pacer` between stages (and throws its signal's reason once aborted). */
export function resolveStagesPaced(df: Dockerfile, options: ResolveOptions, pacer: Pacer): Promise<StageGraph> {
  return runStepsPaced(resolveStageSteps(df, options), pacer);
}

function* resolveStageSteps(df: Dockerfile, options: ResolveOptions): Steps<StageGraph> {
  const lex = new ShellLex(df.escapeToken);
  const env = options.globalArgs ?? emptyEnv;
  const fail = (problem: string, instr: Instruction, token?: string): never => {
    throw locatedError(problem, df.filename, df.lines, instr.range, token);
  };
  const byName = new Map<string, number>();
  const resolved: ResolvedStage[] = [];
  /** How many stages each stage is built on, through its FROM. */
  const depth: number[] = [];

  for (const stage of df.stages) {
    yield;
    let baseName: string;
    try {
      baseName = lex.processWord(stage.baseName, env).result;
    } catch (err) {
      return fail((err as Error).message, stage.from);
    }
    if (baseName === '') fail(`base name (${stage.baseName}) should not be blank`, stage.from, stage.baseName);
    const baseIndex = byName.get(baseName);
    depth.push(baseIndex !== undefined ? depth[baseIndex] + 1 : 0);
    if (depth[stage.index] > MAX_STAGE_CHAIN) {
      fail(`stage ${stage.name ?? stage.index} is built on a chain of more than ${MAX_STAGE_CHAIN} stages (each FROM the one before), the limit of a chain`, stage.from);
    }
    const base: StageBase =
      baseIndex !== undefined ? { kind: 'stage', index: baseIndex } : baseName.toLowerCase() === 'scratch' ? { kind: 'scratch' } : { kind: 'image', ref: baseName };
    resolved.push({ stage, baseName, base, dependencies: baseIndex !== undefined ? [{ index: baseIndex, instruction: stage.from }] : [], images: [] });
    if (stage.name) byName.set(stage.name, stage.index);
  }

  const reference = (from: string, instr: Instruction, self: ResolvedStage): void => {
    let index: number | undefined;
    if (/^[+-]?[0-9]+$/.test(from)) {
      index = Number.parseInt(from, 10);
      if (index < 0 || index >= df.stages.length) fail(`invalid stage index ${index}`, instr, from);
    } else {
      index = byName.get(from.toLowerCase());
    }
    if (index !== undefined) self.dependencies.push({ index, instruction: instr });
    else if (!self.images.includes(from)) self.images.push(from);
  };
  for (const self of resolved) {
    yield;
    for (const instr of self.stage.instructions) {
      if (instr.kind === 'COPY' && instr.from !== undefined) reference(instr.from, instr, self);
      if (instr.kind === 'RUN') for (const m of instr.mounts) if (m.from !== undefined && m.from !== '') reference(m.from, instr, self);
    }
  }

  // A stage reached again while on the current path is a cycle.
  const state = new Map<number, 'visiting' | 'done'>();
  const order: number[] = [];
  // Depth-first, dependencies before the stage; iterative (a stack of frames), so chains of any length fit on the stack.
  const visit = function* (start: number): Steps<void> {
    const frames = [{ index: start, next: 0 }];
    state.set(start, 'visiting');
    while (frames.length > 0) {
      yield;
      const top = frames[frames.length - 1];
      const deps = resolved[top.index].dependencies;
      if (top.next < deps.length) {
        const dep = deps[top.next++];
        const s = state.get(dep.index);
        if (s === 'visiting') {
          const name = resolved[dep.index].stage.name ?? `stage-${dep.index}`;
          fail(`circular dependency detected on stage: ${name}`, dep.instruction, dep.instruction.kind === 'COPY' ? '--from' : undefined);
        }
        if (s === undefined) {
          state.set(dep.index, 'visiting');
          frames.push({ index: dep.index, next: 0 });
        }
        continue;
      }
      frames.pop();
      state.set(top.index, 'done');
      order.push(top.index);
    }
  };

  let target = df.stages.length - 1;
  if (options.target !== undefined && options.target !== '') {
    const t = byName.get(options.target.toLowerCase());
    if (t === undefined) {
      // The target comes from the build's options, not from a line of the Dockerfile: the error names the attribute.
      const names = [...byName.keys()];
      const hint = suggest(options.target, names, true);
      const known = hint ? `did you mean ${hint}?` : names.length > 0 ? `stages: ${names.join(', ')}` : 'the Dockerfile names no stage';
      throw new BktError('INVALID_ARGUMENT', `target stage "${options.target}" could not be found (${known})`, { attribute: 'target' });
    }
    target = t;
  }
  // Cycles anywhere are errors (as BuildKit), not only those the target reaches.
  for (let i = 0; i < resolved.length; i++) if (state.get(i) === undefined) yield* visit(i);
  state.clear();
  order.length = 0;
  yield* visit(target);
  return { stages: resolved, target, order };
}
