/**
 * A Solve request's SourcePolicy (BuildKit's `sourcepolicy.Policy`) applied
 * to the sources of a definition before it is solved: for each source op,
 * the last rule whose selector matches decides — ALLOW keeps it, DENY fails
 * the build naming the source and the rule, CONVERT replaces its identifier
 * (a WILDCARD or REGEX selector's captures fill `$1`, `${1}` …) and, when the
 * update has attrs, sets them. A converted op is re-marshalled, so it gets a
 * new digest, and the inputs naming it are rewritten (as BuildKit's loader).
 */
import { createHash } from 'node:crypto';
import * as pb from '@bkt/api/pb';
import * as sourcepolicy from '@bkt/api/sourcepolicy';
import { BktError } from '@bkt/core';

const { PolicyAction, MatchType, AttrMatch } = sourcepolicy;

/** Checks a policy's rules (INVALID_ARGUMENT naming the bad rule). */
export function checkSourcePolicy(policy: sourcepolicy.Policy): void {
  policy.rules.forEach((rule, i) => {
    const where = `SourcePolicy rule ${i}`;
    if (!rule.selector || rule.selector.identifier === '') throw new BktError('INVALID_ARGUMENT', `${where}: has no selector identifier`, { attribute: 'SourcePolicy' });
    if (![PolicyAction.ALLOW, PolicyAction.DENY, PolicyAction.CONVERT].includes(rule.action)) {
      throw new BktError('INVALID_ARGUMENT', `${where}: unknown action ${rule.action}`, { attribute: 'SourcePolicy' });
    }
    if (rule.action === PolicyAction.CONVERT && !rule.updates?.identifier) {
      throw new BktError('INVALID_ARGUMENT', `${where}: CONVERT has no update identifier`, { attribute: 'SourcePolicy' });
    }
    matcher(rule.selector, where); // compiles, or throws
  });
}

/** `definition` with `policy` applied to its source ops (the same object when no rule matched). */
export function applySourcePolicy(definition: pb.Definition, policy: sourcepolicy.Policy): pb.Definition {
  if (policy.rules.length === 0) return definition;
  checkSourcePolicy(policy);
  const renamed = new Map<string, string>();
  const ops = definition.def.map((bytes) => {
    const op = pb.Op.decode(bytes);
    let changed = false;
    if (op.op?.$case === 'source') {
      const src = op.op.value;
      const decision = decide(policy, src.identifier, src.attrs);
      if (decision?.action === PolicyAction.DENY) {
        throw new BktError('PERMISSION_DENIED', `source ${src.identifier} denied by the build's source policy (rule ${decision.index}: ${decision.rule.selector!.identifier})`, {
          attribute: 'SourcePolicy',
        });
      }
      if (decision?.action === PolicyAction.CONVERT) {
        src.identifier = decision.identifier!;
        if (Object.keys(decision.rule.updates!.attrs).length > 0) src.attrs = { ...src.attrs, ...decision.rule.updates!.attrs };
        changed = true;
      }
    }
    for (const input of op.inputs) {
      const to = renamed.get(input.digest);
      if (to) {
        input.digest = to;
        changed = true;
      }
    }
    if (!changed) return bytes;
    const out = Buffer.from(pb.Op.encode(op).finish());
    renamed.set(digestOf(bytes), digestOf(out));
    return out;
  });
  if (renamed.size === 0) return definition;
  const metadata: Record<string, pb.OpMetadata> = {};
  for (const [d, m] of Object.entries(definition.metadata)) metadata[renamed.get(d) ?? d] = m;
  return { ...definition, def: ops, metadata };
}

function digestOf(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

interface Decision {
  action: sourcepolicy.PolicyAction;
  rule: sourcepolicy.Rule;
  index: number;
  identifier?: string;
}

function decide(policy: sourcepolicy.Policy, identifier: string, attrs: Record<string, string>): Decision | undefined {
  let decision: Decision | undefined;
  policy.rules.forEach((rule, index) => {
    const where = `SourcePolicy rule ${index}`;
    const match = matcher(rule.selector!, where)(identifier);
    if (!match || !constraintsHold(rule.selector!.constraints, attrs, where)) return;
    decision = { action: rule.action, rule, index };
    if (rule.action === PolicyAction.CONVERT) decision.identifier = substitute(rule.updates!.identifier, match);
  });
  return decision;
}

/** The selector's identifier as a matcher: the captures of a match, or null. */
function matcher(selector: sourcepolicy.Selector, where: string): (identifier: string) => string[] | null {
  const pattern = selector.identifier;
  if (selector.matchType === MatchType.EXACT) return (id) => (id === pattern ? [id] : null);
  let re: RegExp;
  try {
    re =
      selector.matchType === MatchType.REGEX
        ? new RegExp(`^(?:${pattern})$`)
        : new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('(.*)')}$`);
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `${where}: invalid selector "${pattern}": ${(err as Error).message}`, { attribute: 'SourcePolicy' });
  }
  return (id) => {
    const m = re.exec(id);
    return m ? [...m] : null;
  };
}

function constraintsHold(constraints: sourcepolicy.AttrConstraint[], attrs: Record<string, string>, where: string): boolean {
  return constraints.every((c) => {
    const v = attrs[c.key];
    if (c.condition === AttrMatch.EQUAL) return v === c.value;
    if (c.condition === AttrMatch.NOTEQUAL) return v !== c.value;
    try {
      return v !== undefined && new RegExp(c.value).test(v);
    } catch (err) {
      throw new BktError('INVALID_ARGUMENT', `${where}: invalid attr pattern "${c.value}": ${(err as Error).message}`, { attribute: 'SourcePolicy' });
    }
  });
}

/** `$1` / `${1}` in `template` replaced by the captures. */
function substitute(template: string, captures: string[]): string {
  return template.replace(/\$\{(\d+)\}|\$(\d+)/g, (_, a: string | undefined, b: string | undefined) => captures[Number(a ?? b)] ?? '');
}
