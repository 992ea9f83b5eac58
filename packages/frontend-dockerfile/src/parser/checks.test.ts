import { describe, expect, it } from 'vitest';
import { type ParseOptions, parseDockerfile } from './dockerfile.js';
import { DockerfileParseError } from './errors.js';
import { RULES } from './rules.js';
import { globalArgs } from './checks.js';

function warnings(text: string, options: ParseOptions = {}): string[] {
  return parseDockerfile(text, options).warnings.map((w) => `${w.range.startLine}:${w.rule}: ${w.message}`);
}
const lines = (...l: string[]): string => l.join('\n');

describe('build checks', () => {
  it('publishes BuildKit rule names, descriptions and URLs', () => {
    expect(RULES.JSONArgsRecommended.url).toBe('https://docs.docker.com/go/dockerfile/rule/json-args-recommended/');
    expect(RULES.FromAsCasing.url).toBe('https://docs.docker.com/go/dockerfile/rule/from-as-casing/');
    expect(RULES.NoEmptyContinuation.url).toBe('https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/');
    expect(RULES.UndefinedArgInFrom.url).toBe('https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/');
    const w = parseDockerfile('FROM scratch\nMAINTAINER me').warnings[0];
    expect(w).toEqual({
      rule: 'MaintainerDeprecated',
      description: 'The MAINTAINER instruction is deprecated, use a label instead to define an image author',
      url: 'https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/',
      message: 'Maintainer instruction is deprecated in favor of using label',
      range: { startLine: 2, endLine: 2 },
    });
  });

  it('a clean Dockerfile has no warnings', () => {
    expect(warnings(lines('# syntax=docker/dockerfile:1', 'ARG BASE=alpine:3.20', 'FROM ${BASE} AS build', 'WORKDIR /src', 'ENV GOOS=linux', 'COPY . .', 'RUN make', 'FROM scratch', 'COPY --from=build /src/app /app', 'ENTRYPOINT ["/app"]'))).toEqual([]);
  });

  it('JSONArgsRecommended unless a SHELL is set', () => {
    expect(warnings('FROM scratch\nCMD run it')).toEqual(['2:JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals']);
    expect(warnings('FROM scratch\nentrypoint run it')).toEqual([
      "2:ConsistentInstructionCasing: Command 'entrypoint' should match the case of the command majority (uppercase)",
      '2:JSONArgsRecommended: JSON arguments recommended for entrypoint to prevent unintended behavior related to OS signals',
    ]);
    expect(warnings('FROM scratch\nSHELL ["/bin/sh", "-c"]\nCMD run it')).toEqual([]);
    expect(warnings('FROM scratch AS a\nSHELL ["/bin/sh", "-c"]\nFROM a\nCMD run it')).toEqual([]);
  });

  it('StageNameCasing, FromAsCasing, ConsistentInstructionCasing', () => {
    expect(warnings('FROM scratch AS Build')).toEqual(["1:StageNameCasing: Stage name 'Build' should be lowercase"]);
    expect(warnings('FROM scratch as build')).toEqual(["1:FromAsCasing: 'as' and 'FROM' keywords' casing do not match"]);
    expect(warnings('from scratch AS build')).toEqual(["1:FromAsCasing: 'AS' and 'from' keywords' casing do not match"]);
    expect(warnings('FROM scratch\nworkdir /a\nWORKDIR /b\nUser x')).toEqual([
      "2:ConsistentInstructionCasing: Command 'workdir' should match the case of the command majority (uppercase)",
      "4:ConsistentInstructionCasing: Command 'User' should match the case of the command majority (uppercase)",
    ]);
  });

  it('DuplicateStageName, ReservedStageName', () => {
    expect(warnings('FROM scratch AS a\nFROM scratch AS a\nFROM scratch AS context')).toEqual([
      '2:DuplicateStageName: Duplicate stage name "a", stage names should be unique',
      '3:ReservedStageName: Stage name should not use the same name as reserved stage "context"',
    ]);
  });

  it('NoEmptyContinuation', () => {
    expect(warnings('FROM scratch\nRUN a \\\n\n  b')).toEqual(['4:NoEmptyContinuation: Empty continuation line']);
  });

  it('UndefinedVar follows ARG, ENV and the parent stage', () => {
    expect(warnings(lines('FROM scratch', 'ENV A=1', 'ARG B', 'ENV C=$A$B$D', 'COPY $E /', 'RUN echo $F'))).toEqual([
      "4:UndefinedVar: Usage of undefined variable '$D' (did you mean $A?)",
      "5:UndefinedVar: Usage of undefined variable '$E' (did you mean $A?)",
    ]);
    expect(warnings(lines('FROM scratch AS base', 'ENV APP=/app', 'FROM base', 'WORKDIR $APP', 'COPY $PATH /x'))).toEqual([]);
    expect(warnings(lines('ARG G=1', 'FROM scratch', 'ENV X=$G'))).toEqual(["3:UndefinedVar: Usage of undefined variable '$G'"]);
    expect(warnings(lines('ARG G=1', 'FROM scratch', 'ARG G', 'ENV X=$G'))).toEqual([]);
  });

  it('UndefinedVar needs the base image environment', () => {
    const text = lines('FROM golang:1.22', 'ENV X=$GOPATH/bin');
    expect(warnings(text)).toEqual([]);
    expect(warnings(text, { imageEnv: () => ['GOPATH=/go'] })).toEqual([]);
    expect(warnings(text, { imageEnv: () => ['GOROOT=/usr/local/go'] })).toEqual(["2:UndefinedVar: Usage of undefined variable '$GOPATH' (did you mean $PATH?)"]);
  });

  it('UndefinedArgInFrom, InvalidDefaultArgInFrom, FromPlatformFlagConstDisallowed, RedundantTargetPlatform', () => {
    expect(warnings('ARG VERSION\nFROM alpine:${VERSON}')).toEqual([
      '2:InvalidDefaultArgInFrom: Default value for ARG alpine:${VERSON} results in empty or invalid base image name',
      "2:UndefinedArgInFrom: FROM argument 'VERSON' is not declared (did you mean VERSION?)",
    ]);
    expect(warnings('ARG IMG\nFROM ${IMG}')).toEqual(['2:InvalidDefaultArgInFrom: Default value for ARG ${IMG} results in empty or invalid base image name']);
    expect(warnings('ARG IMG\nFROM ${IMG}', { buildArgs: { IMG: 'x' } })).toEqual(['2:InvalidDefaultArgInFrom: Default value for ARG ${IMG} results in empty or invalid base image name']);
    expect(warnings('FROM --platform=$BUILDPLATFORM alpine')).toEqual([]);
    expect(warnings('FROM --platform=linux/amd64 alpine')).toEqual(['1:FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value "linux/amd64"']);
    expect(warnings('FROM --platform=linux/amd64 alpine AS build-amd64')).toEqual([]);
    expect(warnings('FROM --platform=$TARGETPLATFORM alpine')).toEqual(['1:RedundantTargetPlatform: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior']);
  });

  it('WorkdirRelativePath only before an absolute WORKDIR in the stage chain', () => {
    expect(warnings('FROM alpine\nWORKDIR app\nWORKDIR sub')).toEqual(['2:WorkdirRelativePath: Relative workdir "app" can have unexpected results if the base image changes']);
    expect(warnings('FROM alpine AS a\nWORKDIR /app\nFROM a\nWORKDIR sub')).toEqual([]);
  });

  it('MultipleInstructionsDisallowed reports the earlier instruction', () => {
    expect(warnings('FROM scratch\nCMD ["a"]\nHEALTHCHECK NONE\nCMD ["b"]\nHEALTHCHECK NONE\nENTRYPOINT ["x"]')).toEqual([
      '2:MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used',
      '3:MultipleInstructionsDisallowed: Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used',
    ]);
    expect(warnings('FROM scratch\nCMD ["a"]\nFROM scratch\nCMD ["b"]')).toEqual([]);
  });

  it('LegacyKeyValueFormat, SecretsUsedInArgOrEnv, Expose checks', () => {
    expect(warnings('FROM scratch\nENV A b\nLABEL c d')).toEqual([
      '2:LegacyKeyValueFormat: "ENV key=value" should be used instead of legacy "ENV key value" format',
      '3:LegacyKeyValueFormat: "LABEL key=value" should be used instead of legacy "LABEL key value" format',
    ]);
    expect(warnings('FROM scratch\nARG GITHUB_TOKEN\nENV DB_PASSWORD=x PUBLIC_KEY=y AUTHOR=z')).toEqual([
      '2:SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG "GITHUB_TOKEN")',
      '3:SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "DB_PASSWORD")',
    ]);
    expect(warnings('FROM scratch\nEXPOSE 80/TCP 127.0.0.1:8080:80')).toEqual([
      "2:ExposeInvalidFormat: EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:8080:80'",
      "2:ExposeProtoCasing: Defined protocol '80/TCP' in EXPOSE instruction should be lowercase",
    ]);
  });

  it('honours # check=skip=…, per-instruction overrides and error=true', () => {
    const text = 'FROM scratch\nMAINTAINER me\nCMD x';
    expect(warnings(`# check=skip=MaintainerDeprecated\n${text}`)).toEqual(['4:JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals']);
    expect(warnings(`# check=skip=all\n${text}`)).toEqual([]);
    expect(warnings(text, { check: 'skip=JSONArgsRecommended,MaintainerDeprecated' })).toEqual([]);
    expect(warnings('FROM scratch\n# check=skip=MaintainerDeprecated\nMAINTAINER me\nMAINTAINER you')).toEqual(['4:MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label']);
    try {
      parseDockerfile(`# check=error=true\n${text}`);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(DockerfileParseError);
      expect((err as DockerfileParseError).message.split('\n')[0]).toBe('Dockerfile:3:1: lint violation found for rules: JSONArgsRecommended, MaintainerDeprecated');
    }
    expect(() => parseDockerfile('# check=bogus\nFROM scratch')).toThrow('invalid check option "bogus"');
  });

  it('computes the global ARG scope for FROM', () => {
    const df = parseDockerfile('ARG A=1\nARG B=${A}2\nARG C\nARG TARGETOS\nFROM scratch AS out');
    const args = globalArgs(df, { buildArgs: { C: 'c', TARGETARCH: 'riscv64' }, targetPlatform: { os: 'linux', architecture: 'arm64' } });
    expect(Object.fromEntries([...args].filter(([k]) => ['A', 'B', 'C', 'TARGETOS', 'TARGETARCH', 'TARGETPLATFORM', 'TARGETSTAGE'].includes(k)))).toEqual({
      A: '1', B: '12', C: 'c', TARGETOS: 'linux', TARGETARCH: 'riscv64', TARGETPLATFORM: 'linux/arm64', TARGETSTAGE: 'out',
    });
  });
});
