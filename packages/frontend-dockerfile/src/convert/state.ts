import type { Platform } from '@bkt/core';
import type { PatternMatcher } from '@bkt/fsutil';
import type { RunOptions, SourceLocation, SourceMap, State } from '@bkt/llb';
import type { Stage } from '../parser/dockerfile.js';
import type { SourceRange } from '../parser/errors.js';
import type { Instruction } from '../parser/instructions.js';
import type { Linter } from '../parser/rules.js';
import { type EnvGetter, type ExpansionBudget, ShellLex, type ShellLexOptions } from '../parser/shell.js';
import type { FrontendOptions } from './attrs.js';
import type { DockerImage } from './image.js';

/**
 * The state of one stage (or one external image read by `COPY --from` /
 * `RUN --mount=from=`) while the Dockerfile is converted: BuildKit's
 * dispatchState.
 */
export interface DispatchState {
  /** Position in the Dockerfile; -1 for an external image or context. */
  index: number;
  stage?: Stage;
  /** The name in vertex prefixes: `AS` name, else `stage-N`; empty when the Dockerfile has a single state. */
  stageName: string;
  /** The base name after global ARG expansion (image, stage or `scratch`). */
  baseName: string;
  /** The stage this one is built on. */
  base?: DispatchState;
  /** Stages and external images this one reads (`COPY --from`, `RUN --mount=from=`), base excluded. */
  deps: Set<DispatchState>;
  state: State;
  image: DockerImage;
  /** The platform from `FROM --platform`, the base stage or the target. */
  platform?: Platform;
  /** ARGs declared in the stage (and inherited from the base stage), with their values. */
  buildArgs: { key: string; value?: string }[];
  /** Instructions to dispatch, ONBUILD triggers of the base first. */
  commands: { instr: Instruction; onbuild: boolean }[];
  /** The base's ONBUILD triggers were added to `commands`. */
  onbuildInit: boolean;
  /** The base image (or named context) was resolved. */
  resolved: boolean;
  dispatched: boolean;
  /** A named context (`context:NAME`) replaces this stage or its base. */
  namedContext?: string;
  ignoreCache: boolean;
  cmdIndex: number;
  cmdTotal: number;
  cmdIsOnBuild: boolean;
  workdirSet: boolean;
  cmdSet: boolean;
  /**
   * The state's environment ends with the image's `Env`, in its order: what
   * re-adding `Env` (as a stage built on this one does) would leave, so a
   * stage built on this one may skip it.
   */
  envEndsWithImageEnv: boolean;
  /** Range of the FROM (or of the instruction that named an external image). */
  range: SourceRange;
}

/** What every instruction's dispatch reads. */
export interface ConvertContext {
  opts: FrontendOptions;
  filename: string;
  lines: string[];
  escapeToken: string;
  sourceMap: SourceMap;
  /** The global ARG scope (predefined platform args, meta ARGs, build args). */
  globalArgs: Map<string, string>;
  /** The main build context (`local://context`). */
  buildContext: State;
  targetPlatform: Platform;
  epoch?: Date;
  proxyEnv?: RunOptions['proxyEnv'];
  lint: Linter;
  /** The main context's `.dockerignore`, for the CopyIgnoredFile check. */
  ignoreMatcher?: PatternMatcher;
  /** Ids of `COPY --link` progress groups. */
  linkCount: number;
  /** What variable substitutions may produce in this conversion, shared by all its lexers. */
  expansionBudget: ExpansionBudget;
  /** The stage or external image a `--from` names (by stage name, index or image reference). */
  stateFor(from: string): DispatchState;
}

/** The state's environment as the shell lexer sees it; a lookup does not copy the environment. */
export function stateEnv(d: DispatchState): EnvGetter {
  const env = d.state.meta.env;
  return { get: (k) => env.get(k), keys: () => env.entries().map(([k]) => k) };
}

/** A shell lexer drawing on the conversion's expansion budget. */
export function shellLex(ctx: ConvertContext, options: Omit<ShellLexOptions, 'budget'> = {}): ShellLex {
  return new ShellLex(ctx.escapeToken, { ...options, budget: ctx.expansionBudget });
}

/** Source location of an instruction's lines (BuildKit's `location`). */
export function location(ctx: ConvertContext, range: SourceRange): SourceLocation {
  return ctx.sourceMap.location([{ start: { line: range.startLine, character: 0 }, end: { line: range.endLine, character: 0 } }]);
}

/** `[stage 2/5] ` before a vertex name (BuildKit's prefixCommand); counts the command. */
export function prefixCommand(d: DispatchState, text: string): string {
  if (d.cmdTotal === 0) return text;
  let out = '[';
  if (d.stageName) out += `${d.stageName} `;
  d.cmdIndex++;
  const width = Math.floor(1 + Math.log10(d.cmdTotal));
  out += `${String(d.cmdIndex).padStart(width)}/${d.cmdTotal}] `;
  if (d.cmdIsOnBuild) out += 'ONBUILD ';
  return out + text;
}

/** Upper-cases the first word (the instruction keyword as written). */
export function uppercaseCmd(text: string): string {
  const sp = text.indexOf(' ');
  return sp < 0 ? text.toUpperCase() : text.slice(0, sp).toUpperCase() + text.slice(sp);
}

/** Expands variables in a vertex name; the name as written when expansion fails. */
export function processCmdEnv(lex: ShellLex, text: string, env: EnvGetter): string {
  try {
    return lex.processWord(text, env).result;
  } catch {
    return text;
  }
}

/** A vertex name for an instruction: keyword upper-cased, variables expanded, stage prefix. */
export function commandName(ctx: ConvertContext, d: DispatchState, text: string, raw = false): string {
  const lex = raw ? shellLex(ctx, { rawQuotes: true, skipUnsetEnv: true }) : shellLex(ctx);
  return uppercaseCmd(processCmdEnv(lex, text, stateEnv(d)));
}
