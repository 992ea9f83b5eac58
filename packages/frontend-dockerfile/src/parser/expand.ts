import { DockerfileParseError, LocalParseError } from './errors.js';
import type { Instruction, KeyValue } from './instructions.js';
import { parseMount } from './mounts.js';
import { type EnvGetter, ExpansionBudget, ShellLex } from './shell.js';

/**
 * Variable substitution of instructions, per the Dockerfile reference: ADD,
 * COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, ARG
 * defaults and RUN --mount options are expanded by the frontend; RUN, CMD,
 * ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER and ONBUILD are left to the
 * shell (or to the child build).
 */

export interface ExpandOptions {
  /** The Dockerfile's escape character (`# escape=`); default `\`. */
  escapeToken?: string;
  /** For error messages; default `Dockerfile`. */
  filename?: string;
  /** What the substitutions may produce; default: a budget of this call's own. */
  budget?: ExpansionBudget;
}

export interface ExpandResult<T extends Instruction> {
  /** A copy of the instruction with its expandable words substituted. */
  instruction: T;
  /** Variables that were referenced and set. */
  matched: Set<string>;
  /** Variables referenced but not set (for the UndefinedVar check). */
  unmatched: Set<string>;
}

/**
 * Substitutes the variables of `instr` from `env`. Throws DockerfileParseError
 * (at the instruction's line) for a bad substitution or `${V:?msg}`.
 */
export function expandInstruction<T extends Instruction>(instr: T, env: EnvGetter, options: ExpandOptions = {}): ExpandResult<T> {
  const budget = options.budget ?? new ExpansionBudget();
  const lex = new ShellLex(options.escapeToken ?? '\\', { budget });
  // Heredoc bodies are expanded without quote processing, always with `\`.
  const rawLex = new ShellLex('\\', { skipProcessQuotes: true, budget });
  const matched = new Set<string>();
  const unmatched = new Set<string>();
  const record = (r: { matched: Set<string>; unmatched: Set<string> }): void => {
    for (const k of r.matched) matched.add(k);
    for (const k of r.unmatched) unmatched.add(k);
  };
  const word = (w: string): string => {
    const r = lex.processWord(w, env);
    record(r);
    return r.result;
  };
  const opt = (w: string | undefined): string | undefined => (w === undefined ? undefined : word(w));
  const kvs = (list: KeyValue[]): KeyValue[] => list.map((kv) => ({ ...kv, key: word(kv.key), value: word(kv.value) }));

  try {
    const out = expandFields(instr);
    return { instruction: out as T, matched, unmatched };
  } catch (err) {
    if (err instanceof LocalParseError) {
      throw new DockerfileParseError(err.message, { file: options.filename ?? 'Dockerfile', line: instr.range.startLine, column: 1 }, instr.original);
    }
    throw err;
  }

  function expandFields(i: Instruction): Instruction {
    switch (i.kind) {
      case 'ENV':
        return { ...i, env: kvs(i.env) };
      case 'LABEL':
        return { ...i, labels: kvs(i.labels) };
      case 'ADD':
      case 'COPY': {
        const contents = i.contents.map((c) => {
          if (!c.expand) return { ...c };
          const r = rawLex.processWord(c.data, env);
          record(r);
          return { ...c, data: r.result };
        });
        const common = {
          sources: i.sources.map(word),
          dest: word(i.dest),
          contents,
          ...(i.chown !== undefined ? { chown: word(i.chown) } : {}),
          ...(i.chmod !== undefined ? { chmod: word(i.chmod) } : {}),
        };
        if (i.kind === 'ADD') return { ...i, ...common, ...(i.checksum !== undefined ? { checksum: opt(i.checksum) } : {}) };
        return { ...i, ...common };
      }
      case 'WORKDIR':
        return { ...i, path: word(i.path) };
      case 'USER':
        return { ...i, user: word(i.user) };
      case 'VOLUME':
        return { ...i, volumes: i.volumes.map(word) };
      case 'STOPSIGNAL':
        return { ...i, signal: word(i.signal) };
      case 'ARG':
        return { ...i, args: i.args.map((a) => (a.value === undefined ? { ...a } : { ...a, value: word(a.value) })) };
      case 'EXPOSE':
        return {
          ...i,
          ports: i.ports.flatMap((p) => {
            const r = lex.processWord(p, env);
            record(r);
            return lex.processWords(p, env);
          }),
        };
      case 'RUN':
        return { ...i, mounts: i.mountSpecs.map((spec) => parseMount(spec, word)) };
      case 'FROM':
        return { ...i, baseName: word(i.baseName), ...(i.platform !== undefined ? { platform: word(i.platform) } : {}) };
      default:
        return { ...i };
    }
  }
}
