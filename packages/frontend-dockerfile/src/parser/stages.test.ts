import { describe, expect, it } from 'vitest';
import { BktError } from '@bkt/core';
import { parseDockerfile } from './dockerfile.js';
import { DockerfileParseError } from './errors.js';
import { envFromList } from './shell.js';
import { resolveStages } from './stages.js';

const parse = (text: string) => parseDockerfile(text, { skipChecks: true });

describe('resolveStages', () => {
  const text = [
    'ARG BASE=alpine:3.20',
    'FROM ${BASE} AS base',
    'FROM base AS build',
    'RUN --mount=type=cache,target=/c --mount=from=tools,target=/t make',
    'FROM busybox AS tools',
    'FROM scratch AS unused',
    'FROM scratch',
    'COPY --from=build /out /',
    'COPY --from=0 /etc/os-release /',
    'COPY --from=nginx:latest /etc/nginx /nginx',
  ].join('\n');

  it('resolves bases, dependencies, images and the order the target needs', () => {
    const g = resolveStages(parse(text), { globalArgs: envFromList(['BASE=alpine:3.20']) });
    expect(g.stages.map((s) => s.base)).toEqual([
      { kind: 'image', ref: 'alpine:3.20' },
      { kind: 'stage', index: 0 },
      { kind: 'image', ref: 'busybox' },
      { kind: 'scratch' },
      { kind: 'scratch' },
    ]);
    expect(g.stages[1].dependencies.map((d) => [d.index, d.instruction.kind])).toEqual([[0, 'FROM'], [2, 'RUN']]);
    expect(g.stages[4].images).toEqual(['nginx:latest']);
    expect(g.target).toBe(4);
    expect(g.order).toEqual([0, 2, 1, 4]);
    expect(resolveStages(parse(text), { target: 'TOOLS', globalArgs: envFromList(['BASE=a']) }).order).toEqual([2]);
  });

  it('reports cycles, bad indexes, unknown targets and blank base names at their line', () => {
    const cycle = () => resolveStages(parse('FROM scratch AS a\nCOPY --from=b /x /\nFROM scratch AS b\nCOPY --from=a /y /'));
    expect(cycle).toThrow(DockerfileParseError);
    expect(cycle).toThrow(/^Dockerfile:(2|4):6: circular dependency detected on stage: (a|b)/);
    expect(() => resolveStages(parse('FROM scratch\nCOPY --from=3 /x /'))).toThrow('Dockerfile:2:13: invalid stage index 3');
    expect(() => resolveStages(parse('FROM scratch AS build\nFROM scratch'), { target: 'biuld' })).toThrow('target stage "biuld" could not be found (did you mean build?)');
    expect(() => resolveStages(parse('ARG B\nFROM ${B}'))).toThrow('Dockerfile:2:6: base name (${B}) should not be blank');
  });

  it('an unknown target is an error of the target attribute, not of a Dockerfile line; it lists the stages', () => {
    const err = (() => {
      try {
        resolveStages(parse('FROM scratch AS build\nFROM scratch AS test\nFROM scratch'), { target: 'nope' });
      } catch (e) {
        return e as BktError;
      }
    })();
    expect(err).toBeInstanceOf(BktError);
    expect(err).not.toBeInstanceOf(DockerfileParseError);
    expect(err!.message).toBe('target stage "nope" could not be found (stages: build, test)');
    expect(err!.details).toEqual({ attribute: 'target' });
    expect(() => resolveStages(parse('FROM scratch'), { target: 'app' })).toThrow('target stage "app" could not be found (the Dockerfile names no stage)');
  });
});
