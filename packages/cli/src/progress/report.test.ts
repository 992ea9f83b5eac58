import { describe, expect, it } from 'vitest';
import type { VertexWarningEvent } from '@bkt/core';
import { printWarnings, stepError, userMessage } from './report.js';

const op = `sha256:${'c'.repeat(64)}`;

describe('userMessage', () => {
  it('leaves op references out unless debugging', () => {
    expect(userMessage(`[2/2] RUN false: exit code: 1 (op ${op})`, false)).toBe('[2/2] RUN false: exit code: 1');
    expect(userMessage(`RUN x: needs entitlement network.host, which the build did not grant (op ${op}; pass --allow network.host)`, false)).toBe(
      'RUN x: needs entitlement network.host, which the build did not grant (pass --allow network.host)',
    );
    expect(userMessage(`no source for "x://" identifiers (op ${op}, x://y); registered schemes: local`, false)).toBe('no source for "x://" identifiers (x://y); registered schemes: local');
    expect(userMessage(`no executor for exec ops (op ${op} "RUN true"): add it`, false)).toBe('no executor for exec ops ("RUN true"): add it');
    expect(userMessage(`a (op ${op})\nDockerfile:2`, false)).toBe('a\nDockerfile:2');
    expect(userMessage(`failed (op ${op})`, true)).toBe(`failed (op ${op})`);
    // A digest that is not an op reference stays: it names what is wrong.
    expect(userMessage(`invalid LLB op ${op}: input is not in the definition`, false)).toBe(`invalid LLB op ${op}: input is not in the definition`);
  });

  it("a step's error without the step's name in front", () => {
    expect(stepError({ name: '[a 2/2] RUN exit 3', error: `[a 2/2] RUN exit 3: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3 (op ${op})` }, false)).toBe(
      'process "/bin/sh -c exit 3" did not complete successfully: exit code: 3',
    );
  });
});

describe('printWarnings', () => {
  const warnings: VertexWarningEvent[] = [
    { vertex: op as VertexWarningEvent['vertex'], level: 1, short: "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)", detail: ["The 'as' keyword should match the case of the 'from' keyword"], url: 'https://docs.docker.com/go/dockerfile/rule/from-as-casing/' },
    { vertex: op as VertexWarningEvent['vertex'], level: 1, short: 'JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)', detail: [] },
  ];
  const print = (list: VertexWarningEvent[], opts: { color: boolean; debug: boolean }) => {
    let out = '';
    printWarnings(list, { write: (s: string) => (out += s) }, opts);
    return out;
  };

  it("prints buildx's summary after a build", () => {
    expect(print(warnings, { color: false, debug: false })).toBe(
      [
        '',
        ' 2 warnings found (set BKT_DEBUG=1 to expand):',
        " - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
        ' - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)',
        '',
      ].join('\n'),
    );
    expect(print(warnings.slice(0, 1), { color: true, debug: false })).toContain(' \x1b[33m1 warning found (set BKT_DEBUG=1 to expand):\x1b[0m\n');
    expect(print([], { color: false, debug: false })).toBe('');
  });

  it('expanded with BKT_DEBUG: the description and the URL', () => {
    expect(print(warnings.slice(0, 1), { color: false, debug: true })).toBe(
      [
        '',
        ' 1 warning found:',
        " - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
        "The 'as' keyword should match the case of the 'from' keyword",
        'More info: https://docs.docker.com/go/dockerfile/rule/from-as-casing/',
        '',
        '',
      ].join('\n'),
    );
  });
});
