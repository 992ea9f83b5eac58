/**
 * containerd's filter syntax, as BuildKit's DiskUsage, Prune and ListWorkers
 * read their `filter` fields: each string is one filter, a record matching
 * any of them is selected (an empty list selects everything); a filter is
 * comma-separated terms that must all hold. A term is `FIELD` (the field is
 * set / true), `FIELD==VALUE`, `FIELD!=VALUE` or `FIELD~=REGEXP` (the regexp
 * is searched in the value); a value may be double-quoted (then it may hold
 * commas, and `\"` and `\\` escape). FIELD may be a dotted path
 * (`labels.org.mobyproject.buildkit.worker.executor`).
 */
import { BktError, type UsageRecord } from '@bkt/core';

/** Resolves a field path: its value and whether the record has it (containerd's `Adaptor`). */
export type FieldAdaptor = (path: string[]) => [value: string, present: boolean];

interface Term {
  path: string[];
  op?: '==' | '!=' | '~=';
  value?: string;
  re?: RegExp;
}

/**
 * Parses `filters` (`what` names the request field in errors); the result
 * tells whether a record, seen through its adaptor, is selected.
 * `INVALID_ARGUMENT` naming the filter when one does not parse.
 */
export function parseFilters(filters: readonly string[], what: string): (adaptor: FieldAdaptor) => boolean {
  const parsed = filters.filter((f) => f.trim() !== '').map((f) => parseFilter(f, what));
  if (parsed.length === 0) return () => true;
  return (adaptor) => parsed.some((terms) => terms.every((t) => holds(t, adaptor)));
}

function holds(t: Term, adaptor: FieldAdaptor): boolean {
  const [value, present] = adaptor(t.path);
  if (!t.op) return present;
  if (t.op === '==') return present && value === t.value;
  if (t.op === '!=') return !present || value !== t.value;
  return present && t.re!.test(value);
}

function parseFilter(filter: string, what: string): Term[] {
  const bad = (why: string) => new BktError('INVALID_ARGUMENT', `${what} "${filter}": ${why}`, { attribute: what });
  const terms: Term[] = [];
  let i = 0;
  const s = filter;
  while (i <= s.length) {
    const m = /^\s*([A-Za-z0-9_.-]+)\s*/.exec(s.slice(i));
    if (!m) throw bad(`expected a field name at offset ${i}`);
    const path = m[1].split('.');
    if (path.some((p) => p === '')) throw bad(`empty field name in "${m[1]}"`);
    i += m[0].length;
    const opMatch = /^(==|!=|~=)\s*/.exec(s.slice(i));
    const term: Term = { path };
    if (opMatch) {
      term.op = opMatch[1] as Term['op'];
      i += opMatch[0].length;
      let value: string;
      if (s[i] === '"') {
        value = '';
        let j = i + 1;
        for (; j < s.length && s[j] !== '"'; j++) {
          if (s[j] === '\\' && j + 1 < s.length) j++;
          value += s[j];
        }
        if (j >= s.length) throw bad('unterminated quoted value');
        i = j + 1;
      } else {
        const end = s.indexOf(',', i);
        value = (end < 0 ? s.slice(i) : s.slice(i, end)).trim();
        i = end < 0 ? s.length : end;
      }
      term.value = value;
      if (term.op === '~=') {
        try {
          term.re = new RegExp(value);
        } catch (err) {
          throw bad(`invalid regular expression: ${(err as Error).message}`);
        }
      }
    }
    terms.push(term);
    const rest = /^\s*(,|$)/.exec(s.slice(i));
    if (!rest) throw bad(`expected "," or the end after field "${path.join('.')}" at offset ${i}`);
    if (rest[1] === '') break;
    i += rest[0].length;
  }
  return terms;
}

/** How a usage record answers filter fields, as BuildKit's `adaptUsageInfo`. */
export function usageAdaptor(u: UsageRecord): FieldAdaptor {
  return ([field]) => {
    switch (field) {
      case 'id':
        return [u.id, u.id !== ''];
      case 'parents':
      case 'parent':
        return [u.parents.join(';'), u.parents.length > 0];
      case 'description':
        return [u.description, u.description !== ''];
      case 'inuse':
        return ['', u.inUse];
      case 'mutable':
        return ['', u.mutable];
      case 'immutable':
        return ['', !u.mutable];
      case 'shared':
        return ['', u.shared];
      case 'private':
        return ['', !u.shared];
      case 'type':
        return [u.recordType, u.recordType !== ''];
      default:
        return ['', false];
    }
  };
}
