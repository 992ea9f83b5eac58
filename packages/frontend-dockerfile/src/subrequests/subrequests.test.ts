import { describe, expect, it } from 'vitest';
import { isBktError } from '@bkt/core';
import { convertDockerfile } from '../convert/convert.js';
import { answerSubrequest, type SubrequestInput } from './index.js';
import { sourceSnippet, table } from './text.js';

const decode = (b: Uint8Array | undefined) => new TextDecoder().decode(b);

async function ask(id: string, text: string, extra: Partial<SubrequestInput> = {}) {
  const input: SubrequestInput = { text, filename: 'Dockerfile', buildArgs: {}, convert: () => convertDockerfile(text, { buildArgs: extra.buildArgs ?? {} }), ...extra };
  const r = await answerSubrequest(id, input);
  expect(r.ref).toBeNull();
  return { json: JSON.parse(decode(r.metadata['result.json'])), text: decode(r.metadata['result.txt']), status: r.metadata['result.statuscode'] && decode(r.metadata['result.statuscode']) };
}

const dockerfile = [
  '# VERSION the release to build',
  'ARG VERSION=1.0',
  'ARG UNUSED=x',
  'ARG BASE=scratch',
  '# deps fetches the dependencies',
  'FROM ${BASE} AS deps',
  '# MIRROR where packages come from',
  'ARG MIRROR=https://mirror.example',
  'RUN --mount=type=secret,id=npmrc,required=true --mount=type=ssh true',
  '',
  'FROM scratch AS tools',
  'ARG TOOLS_ONLY=1',
  '',
  '# app builds the final image',
  'FROM deps AS app',
  'ARG VERSION',
  'ARG COMMIT',
  'RUN --mount=type=secret,target=/run/token true',
  '',
].join('\n');

describe('frontend.outline', () => {
  it("lists the target's build args (with the global ARGs its FROM lines use), secrets and ssh, by line", async () => {
    const { json, text } = await ask('frontend.outline', dockerfile, { target: 'app', buildArgs: { COMMIT: 'abc123' } });
    expect(json.name).toBe('app');
    expect(json.description).toBe('builds the final image');
    expect(json.args.map((a: { name: string; value?: string; description?: string }) => [a.name, a.value ?? '', a.description ?? ''])).toEqual([
      ['VERSION', '1.0', 'the release to build'],
      ['BASE', 'scratch', ''],
      ['MIRROR', 'https://mirror.example', 'where packages come from'],
      ['COMMIT', 'abc123', ''],
    ]);
    expect(json.secrets).toEqual([
      { name: 'npmrc', required: true, location: { sourceIndex: 0, ranges: [{ start: { line: 9 }, end: { line: 9 } }] } },
      { name: 'token', location: { sourceIndex: 0, ranges: [{ start: { line: 18 }, end: { line: 18 } }] } },
    ]);
    expect(json.ssh.map((s: { name: string }) => s.name)).toEqual(['default']);
    expect(text).toBe(
      [
        'TARGET:      app',
        'DESCRIPTION: builds the final image',
        '',
        'BUILD ARG   VALUE                    DESCRIPTION',
        'VERSION     1.0                      the release to build',
        'BASE        scratch                  ',
        'MIRROR      https://mirror.example   where packages come from',
        'COMMIT      abc123                   ',
        '',
        'SECRET   REQUIRED',
        'npmrc    true',
        'token    ',
        '',
        'SSH       REQUIRED',
        'default   ',
        '',
        '',
      ].join('\n'),
    );
  });

  it('of the default (last) stage; an unknown target names the attribute', async () => {
    const { json } = await ask('frontend.outline', 'FROM scratch\nARG A=1\n');
    expect(json).toMatchObject({ args: [{ name: 'A', value: '1' }] });
    expect(json.name).toBeUndefined();
    const err = await ask('frontend.outline', dockerfile, { target: 'nope' }).catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toBe('target stage "nope" could not be found (stages: deps, tools, app)');
  });
});

describe('frontend.targets', () => {
  it('lists every stage with its description, the last as the default', async () => {
    const { json, text } = await ask('frontend.targets', dockerfile);
    expect(json.targets.map((t: { name: string; default?: boolean }) => [t.name, !!t.default])).toEqual([
      ['deps', false],
      ['tools', false],
      ['app', true],
    ]);
    expect(text).toBe(['TARGET        DESCRIPTION', 'deps          fetches the dependencies', 'tools         ', 'app (default) builds the final image', ''].join('\n'));
    expect((await ask('frontend.targets', 'FROM scratch\n')).text).toBe('TARGET    DESCRIPTION\n(default) \n');
  });
});

describe('frontend.lint', () => {
  it('returns the warnings with their Dockerfile lines and status 1; none: status 0', async () => {
    const { json, text, status } = await ask('frontend.lint', 'FROM scratch as base\nCMD echo hi\n');
    expect(status).toBe('1');
    expect(json.warnings.map((w: { ruleName: string }) => w.ruleName)).toEqual(['FromAsCasing', 'JSONArgsRecommended']);
    expect(text).toBe(
      [
        '',
        'WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/',
        "'as' and 'FROM' keywords' casing do not match",
        'Dockerfile:1',
        '--------------------',
        '   1 | >>> FROM scratch as base',
        '   2 |     CMD echo hi',
        '   3 |     ',
        '--------------------',
        '',
        'WARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/',
        'JSON arguments recommended for CMD to prevent unintended behavior related to OS signals',
        'Dockerfile:2',
        '--------------------',
        '   1 |     FROM scratch as base',
        '   2 | >>> CMD echo hi',
        '   3 |     ',
        '--------------------',
        '',
      ].join('\n'),
    );
    const clean = await ask('frontend.lint', 'FROM scratch AS base\nCMD ["echo", "hi"]\n');
    expect(clean.status).toBe('0');
    expect(clean.json.warnings).toEqual([]);
    expect(clean.text).toBe('');
  });

  it('an unknown request id names the attribute and the known ones', async () => {
    const err = await ask('frontend.bogus', 'FROM scratch\n').catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toBe('requestid: unknown subrequest "frontend.bogus" (known: frontend.outline, frontend.targets, frontend.lint)');
  });
});

describe('text layout', () => {
  it('tabwriter columns: every cell but the last padded to the widest plus the padding', () => {
    expect(table([['a', 'bb', 'c'], ['ccc', 'd', '']], 2)).toBe('a    bb  c\nccc  d   \n');
  });

  it('source snippets: context lines around the range, as BuildKit prints them', () => {
    const text = Array.from({ length: 12 }, (_, i) => `line ${i + 1}`).join('\n');
    expect(sourceSnippet('Dockerfile', text, [{ start: 6, end: 6 }])).toBe(
      ['Dockerfile:6', '--------------------', '   4 |     line 4', '   5 |     line 5', '   6 | >>> line 6', '   7 |     line 7', '   8 |     line 8', '--------------------', ''].join('\n'),
    );
    expect(sourceSnippet('Dockerfile', text, [{ start: 11, end: 12 }])).toBe(
      ['Dockerfile:11', '--------------------', '  10 |     line 10', '  11 | >>> line 11', '  12 | >>> line 12', '--------------------', ''].join('\n'),
    );
    expect(sourceSnippet('Dockerfile', text, [{ start: 40, end: 40 }])).toBe('');
  });
});
