import { describe, expect, it } from 'vitest';
import * as sourcepolicy from '@bkt/api/sourcepolicy';
import { sourcePolicyOf } from './source-policy.js';

const ALPINE = 'docker-image://docker.io/library/alpine:3.20';
const rule = (action: sourcepolicy.PolicyAction, identifier: string, update?: string, matchType = sourcepolicy.MatchType.WILDCARD, attrs: Record<string, string> = {}) =>
  sourcepolicy.Rule.fromPartial({ action, selector: { identifier, matchType }, ...(update ? { updates: { identifier: update, attrs } } : {}) });
const decide = (rules: sourcepolicy.Rule[], identifier = ALPINE, attrs: Record<string, string> = {}) => sourcePolicyOf({ version: 1, rules })({ identifier, attrs });

describe("a Solve request's source policy as the solver's per-build policy", () => {
  it('DENY of a matching source names the rule', () => {
    expect(decide([rule(sourcepolicy.PolicyAction.DENY, 'docker-image://docker.io/library/*')])).toEqual({ action: 'deny', reason: 'rule 0: docker-image://docker.io/library/*' });
  });

  it("CONVERT gives the identifier with the captures; the update's attrs are set over the source's", () => {
    expect(decide([rule(sourcepolicy.PolicyAction.CONVERT, 'docker-image://docker.io/library/*:3.20', 'docker-image://mirror.local/$1:3.20')])).toEqual({
      action: 'convert',
      identifier: 'docker-image://mirror.local/alpine:3.20',
    });
    const withAttrs = [rule(sourcepolicy.PolicyAction.CONVERT, 'docker-image://*', 'docker-image://${1}', sourcepolicy.MatchType.WILDCARD, { 'image.recordtype': 'internal' })];
    expect(decide(withAttrs, ALPINE, { keep: 'me', 'image.recordtype': 'regular' })).toEqual({
      action: 'convert',
      identifier: ALPINE,
      attrs: { keep: 'me', 'image.recordtype': 'internal' },
    });
  });

  it('the last matching rule decides; no match allows', () => {
    expect(decide([rule(sourcepolicy.PolicyAction.DENY, '*'), rule(sourcepolicy.PolicyAction.ALLOW, 'docker-image://*')])).toEqual({ action: 'allow' });
    expect(decide([rule(sourcepolicy.PolicyAction.DENY, 'git://*')])).toEqual({ action: 'allow' });
    const exact = (id: string) => [rule(sourcepolicy.PolicyAction.DENY, id, undefined, sourcepolicy.MatchType.EXACT)];
    expect(decide(exact(ALPINE))).toMatchObject({ action: 'deny' });
    expect(decide(exact('docker-image://docker.io/library/*'))).toEqual({ action: 'allow' });
  });

  it('a bad rule is an error naming it, before any source is asked about', () => {
    expect(() => sourcePolicyOf({ version: 1, rules: [rule(sourcepolicy.PolicyAction.CONVERT, '*')] })).toThrow(/SourcePolicy rule 0: CONVERT has no update identifier/);
    expect(() => sourcePolicyOf({ version: 1, rules: [rule(sourcepolicy.PolicyAction.DENY, '(', undefined, sourcepolicy.MatchType.REGEX)] })).toThrow(/SourcePolicy rule 0: invalid selector/);
  });
});
