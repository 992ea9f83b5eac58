/**
 * The Dockerfile parser: directives, raw parse, typed instructions, stages,
 * variable expansion and build checks. See the package README.
 */
export { parseDockerfile, parseInstructions } from './dockerfile.js';
export type { Dockerfile, Stage, ParseOptions } from './dockerfile.js';
export { globalArgs } from './checks.js';
export type { CheckOptions } from './checks.js';
export { expandInstruction } from './expand.js';
export type { ExpandOptions, ExpandResult } from './expand.js';
export { parseRaw, parseHeredoc, heredocsFromLine, chompHeredocContent, RawParseError } from './ast.js';
export type { RawDockerfile, RawNode, Heredoc, EmptyContinuationWarning } from './ast.js';
export { parseDirectives, parseCheckConfig } from './directives.js';
export type { Directive, DirectiveName, CheckConfig } from './directives.js';
export { DockerfileParseError, locatedError } from './errors.js';
export type { SourceRange, ErrorLocation } from './errors.js';
export { parseInstruction, INSTRUCTION_KINDS } from './instructions.js';
export type * from './instructions.js';
export { parseMount } from './mounts.js';
export type { RunMount, MountType, CacheSharing, WordExpander } from './mounts.js';
export { RULES, Linter } from './rules.js';
export type { LintRule, LintWarning, RuleName } from './rules.js';
export { ShellLex, envFromList, envFromMap, emptyEnv } from './shell.js';
export type { EnvGetter, ShellLexOptions, ProcessWordResult } from './shell.js';
export { predefinedPlatformArgs } from './platforms.js';
export { parseDuration, parseRAMInBytes } from './units.js';
export { resolveStages } from './stages.js';
export type { StageGraph, ResolvedStage, StageBase, StageDependency, ResolveOptions } from './stages.js';
