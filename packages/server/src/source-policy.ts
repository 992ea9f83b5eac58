/**
 * A Solve request's SourcePolicy (BuildKit's `sourcepolicy.Policy`) as the
 * solver's per-build source policy, which it asks of every source of the
 * build — the Definition's, and every definition and image a frontend's
 * build resolves: the last rule whose selector matches decides — ALLOW keeps
 * the source, DENY fails the build naming the source and the rule, CONVERT
 * replaces its identifier (a WILDCARD or REGEX selector's captures fill `$1`,
 * `${1}` …) and, when the update has attrs, sets them.
 */
import * as sourcepolicy from '@bkt/api/sourcepolicy';
import { BktError } from '@bkt/core';
import type { SourcePolicy } from '@bkt/solver';

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

/**
 * The policy as the solver's per-build `SourcePolicy` (checked first:
 * INVALID_ARGUMENT naming a bad rule). A DENY's reason names the rule; a
 * CONVERT gives the new identifier, and the source's attrs with the rule's
 * update attrs set over them.
 */
export function sourcePolicyOf(policy: sourcepolicy.Policy): SourcePolicy {
  checkSourcePolicy(policy);
  return ({ identifier, attrs }) => {
    const decision = decide(policy, identifier, attrs);
    if (!decision || decision.action === PolicyAction.ALLOW) return { action: 'allow' };
    if (decision.action === PolicyAction.DENY) return { action: 'deny', reason: `rule ${decision.index}: ${decision.rule.selector!.identifier}` };
    const updates = decision.rule.updates!.attrs;
    return { action: 'convert', identifier: decision.identifier!, ...(Object.keys(updates).length > 0 ? { attrs: { ...attrs, ...updates } } : {}) };
  };
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
