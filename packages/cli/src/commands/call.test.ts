import { describe, expect, it } from 'vitest';
import { isBktError } from '@bkt/core';
import { parseCall, printCallResult, refuseExports } from './call.js';

const enc = (s: string) => new TextEncoder().encode(s);

describe('parseCall', () => {
  it('maps check, outline and targets to the frontend subrequests; build is no call', () => {
    expect(parseCall('check', undefined)).toEqual({ name: 'check', requestId: 'frontend.lint', format: 'text' });
    expect(parseCall(undefined, true)).toEqual({ name: 'check', requestId: 'frontend.lint', format: 'text' });
    expect(parseCall('outline,format=json', undefined)).toEqual({ name: 'outline', requestId: 'frontend.outline', format: 'json' });
    expect(parseCall('targets', undefined)).toMatchObject({ requestId: 'frontend.targets' });
    expect(parseCall('lint', undefined)).toMatchObject({ name: 'check' });
    expect(parseCall('build', undefined)).toBeUndefined();
    expect(parseCall(undefined, undefined)).toBeUndefined();
  });

  it('a bad value is an error naming --call', () => {
    const error = (call: string | undefined, check?: boolean) => {
      try {
        parseCall(call, check);
      } catch (err) {
        expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
        return (err as Error).message;
      }
      return 'no error';
    };
    expect(error('explain')).toBe('--call explain: unknown function "explain" (build, check, outline, targets)');
    expect(error('outline,format=yaml')).toBe('--call outline,format=yaml: unknown option "format=yaml" (format=text or format=json)');
    expect(error('outline', true)).toBe('--check and --call outline ask for different things: give one of them');
  });

  it('refuses export flags with a call, naming them', () => {
    const call = parseCall('check', undefined)!;
    expect(() => refuseExports(call, { output: ['out'], tag: ['x'], push: true })).toThrow('--call check builds and exports nothing: drop --output, --tag, --push');
    expect(() => refuseExports(call, { output: [], tag: [] })).not.toThrow();
  });
});

describe('printCallResult', () => {
  const print = (name: string, metadata: Record<string, string>) => {
    let out = '';
    const code = printCallResult(parseCall(name, undefined)!, Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, enc(v)])), { write: (s: string) => (out += s) });
    return { code, out };
  };

  it("check: buildx's header, the warnings, and the status code", () => {
    const found = print('check', { 'result.json': '{"warnings":[{"ruleName":"A"},{"ruleName":"B"}]}', 'result.txt': '\nWARNING: A\n…\n', 'result.statuscode': '1' });
    expect(found).toEqual({ code: 1, out: 'Check complete, 2 warnings have been found!\n\nWARNING: A\n…\n' });
    const one = print('check', { 'result.json': '{"warnings":[{"ruleName":"A"}]}', 'result.txt': '\nWARNING: A\n', 'result.statuscode': '1' });
    expect(one.out).toMatch(/^Check complete, 1 warning has been found!\n/);
    expect(print('check', { 'result.json': '{"warnings":[]}', 'result.txt': '', 'result.statuscode': '0' })).toEqual({ code: 0, out: 'Check complete, no warnings found.\n' });
  });

  it('outline and targets: the text answer; format=json: the JSON', () => {
    expect(print('targets', { 'result.json': '{}', 'result.txt': 'TARGET DESCRIPTION\n' })).toEqual({ code: 0, out: 'TARGET DESCRIPTION\n' });
    expect(print('outline,format=json', { 'result.json': '{"name":"app"}', 'result.txt': 'x' })).toEqual({ code: 0, out: '{"name":"app"}\n' });
    expect(() => print('outline', {})).toThrow(/without result.json/);
  });
});
