import { type CheckConfig, DirectiveParser, parseCheckConfig } from './directives.js';
import type { SourceRange } from './errors.js';

/**
 * The build checks (BuildKit's frontend/dockerfile/linter rules): names,
 * descriptions and documentation URLs as BuildKit publishes them, and the
 * Linter that honours `# check=skip=…;error=true;experimental=…`.
 */

export interface LintRule {
  name: string;
  description: string;
  url: string;
  experimental?: boolean;
}

export interface LintWarning {
  rule: string;
  description: string;
  url: string;
  /** The specific message, e.g. `Usage of undefined variable '$FOO'`. */
  message: string;
  range: SourceRange;
}

const rule = (name: string, description: string, experimental = false): LintRule => ({
  name,
  description,
  url: `https://docs.docker.com/go/dockerfile/rule/${kebab(name)}/`,
  ...(experimental ? { experimental } : {}),
});

function kebab(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').replace(/([A-Z])([A-Z][a-z])/g, '$1-$2').toLowerCase();
}

export const RULES = {
  StageNameCasing: rule('StageNameCasing', 'Stage names should be lowercase'),
  FromAsCasing: rule('FromAsCasing', "The 'as' keyword should match the case of the 'from' keyword"),
  NoEmptyContinuation: rule('NoEmptyContinuation', 'Empty continuation lines will become errors in a future release'),
  ConsistentInstructionCasing: rule('ConsistentInstructionCasing', 'All commands within the Dockerfile should use the same casing (either upper or lower)'),
  DuplicateStageName: rule('DuplicateStageName', 'Stage names should be unique'),
  ReservedStageName: rule('ReservedStageName', 'Reserved words should not be used as stage names'),
  JSONArgsRecommended: rule('JSONArgsRecommended', 'JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals'),
  MaintainerDeprecated: rule('MaintainerDeprecated', 'The MAINTAINER instruction is deprecated, use a label instead to define an image author'),
  UndefinedArgInFrom: rule('UndefinedArgInFrom', 'FROM command must use declared ARGs'),
  WorkdirRelativePath: rule('WorkdirRelativePath', 'Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes'),
  UndefinedVar: rule('UndefinedVar', 'Variables should be defined before their use'),
  MultipleInstructionsDisallowed: rule('MultipleInstructionsDisallowed', 'Multiple instructions of the same type should not be used in the same stage'),
  LegacyKeyValueFormat: rule('LegacyKeyValueFormat', 'Legacy key/value format with whitespace separator should not be used'),
  RedundantTargetPlatform: rule('RedundantTargetPlatform', 'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior'),
  SecretsUsedInArgOrEnv: rule('SecretsUsedInArgOrEnv', 'Sensitive data should not be used in the ARG or ENV commands'),
  InvalidDefaultArgInFrom: rule('InvalidDefaultArgInFrom', 'Default value for global ARG results in an empty or invalid base image name'),
  FromPlatformFlagConstDisallowed: rule('FromPlatformFlagConstDisallowed', 'FROM --platform flag should not use a constant value'),
  CopyIgnoredFile: rule('CopyIgnoredFile', 'Attempting to Copy file that is excluded by .dockerignore'),
  ExposeProtoCasing: rule('ExposeProtoCasing', 'Protocol in EXPOSE instruction should be lowercase'),
  InvalidBaseImagePlatform: rule('InvalidBaseImagePlatform', 'Base image platform does not match expected target platform'),
  ExposeInvalidFormat: rule('ExposeInvalidFormat', 'IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release'),
} as const satisfies Record<string, LintRule>;

export type RuleName = keyof typeof RULES;

/** Collects warnings, dropping those the check configuration skips. */
export class Linter {
  constructor(
    readonly config: CheckConfig,
    /** Shared by the linters made with forComments. */
    readonly warnings: LintWarning[] = [],
  ) {}

  /** A linter for one instruction whose comments may hold a `# check=` override. */
  forComments(comments: readonly string[]): Linter {
    for (const comment of comments) {
      const parser = new DirectiveParser('');
      let d;
      try {
        d = parser.parseLine(comment);
      } catch {
        continue;
      }
      if (!d || d.name !== 'check') continue;
      let extra: CheckConfig;
      try {
        extra = parseCheckConfig(d.value.split(' ')[0]);
      } catch {
        return this;
      }
      const merged: CheckConfig = {
        skipAll: this.config.skipAll || extra.skipAll,
        skip: [...this.config.skip, ...extra.skip],
        experimentalAll: this.config.experimentalAll || extra.experimentalAll,
        experimental: [...this.config.experimental, ...extra.experimental],
        error: this.config.error,
      };
      return new Linter(merged, this.warnings);
    }
    return this;
  }

  report(r: LintRule, range: SourceRange, message: string): void {
    if (r.experimental) {
      if (!this.config.experimentalAll && !this.config.experimental.includes(r.name)) return;
    } else if (this.config.skipAll || this.config.skip.includes(r.name)) {
      return;
    }
    this.warnings.push({ rule: r.name, description: r.description, url: r.url, message, range: { ...range } });
  }
}
