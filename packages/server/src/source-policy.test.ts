import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import * as sourcepolicy from '@bkt/api/sourcepolicy';
import { applySourcePolicy } from './source-policy.js';

const enc = (op: object) => Buffer.from(pb.Op.encode(pb.Op.fromPartial(op as pb.Op)).finish());
const digest = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const src = enc({ op: { $case: 'source', value: { identifier: 'docker-image://docker.io/library/alpine:3.20', attrs: {} } } });
const ret = enc({ inputs: [{ digest: digest(src), index: 0 }] });
const def: pb.Definition = { def: [src, ret], metadata: { [digest(src)]: pb.OpMetadata.fromPartial({ description: { a: 'b' } }) }, Source: undefined };
const rule = (action: sourcepolicy.PolicyAction, identifier: string, update?: string, matchType = sourcepolicy.MatchType.WILDCARD) =>
  sourcepolicy.Rule.fromPartial({ action, selector: { identifier, matchType }, ...(update ? { updates: { identifier: update, attrs: {} } } : {}) });

describe('a Solve request source policy over a definition', () => {
  it('DENY of a matching source names it and the rule', () => {
    expect(() => applySourcePolicy(def, { version: 1, rules: [rule(sourcepolicy.PolicyAction.DENY, 'docker-image://docker.io/library/*')] })).toThrow(
      /source docker-image:\/\/docker\.io\/library\/alpine:3\.20 denied by the build's source policy \(rule 0/,
    );
  });

  it('CONVERT rewrites the identifier with the captures, re-digests the op and the inputs naming it, keeps its metadata', () => {
    const out = applySourcePolicy(def, {
      version: 1,
      rules: [rule(sourcepolicy.PolicyAction.CONVERT, 'docker-image://docker.io/library/*:3.20', 'docker-image://mirror.local/$1:3.20')],
    });
    const op = pb.Op.decode(out.def[0]!);
    expect(op.op?.$case === 'source' && op.op.value.identifier).toBe('docker-image://mirror.local/alpine:3.20');
    expect(pb.Op.decode(out.def[1]!).inputs[0]!.digest).toBe(digest(out.def[0]!));
    expect(Object.keys(out.metadata)).toEqual([digest(out.def[0]!)]);
  });

  it('the last matching rule decides; no match leaves the definition as it is', () => {
    const allowAfterDeny = { version: 1, rules: [rule(sourcepolicy.PolicyAction.DENY, '*'), rule(sourcepolicy.PolicyAction.ALLOW, 'docker-image://*')] };
    expect(applySourcePolicy(def, allowAfterDeny)).toBe(def);
    expect(applySourcePolicy(def, { version: 1, rules: [rule(sourcepolicy.PolicyAction.DENY, 'git://*')] })).toBe(def);
    const exact = (id: string) => ({ version: 1, rules: [rule(sourcepolicy.PolicyAction.DENY, id, undefined, sourcepolicy.MatchType.EXACT)] });
    expect(() => applySourcePolicy(def, exact('docker-image://docker.io/library/alpine:3.20'))).toThrow(/denied/);
    expect(applySourcePolicy(def, exact('docker-image://docker.io/library/*'))).toBe(def);
  });

  it('a bad rule is an error naming it', () => {
    expect(() => applySourcePolicy(def, { version: 1, rules: [rule(sourcepolicy.PolicyAction.CONVERT, '*')] })).toThrow(/SourcePolicy rule 0: CONVERT has no update identifier/);
    expect(() => applySourcePolicy(def, { version: 1, rules: [rule(sourcepolicy.PolicyAction.DENY, '(', undefined, sourcepolicy.MatchType.REGEX)] })).toThrow(/SourcePolicy rule 0: invalid selector/);
  });
});
