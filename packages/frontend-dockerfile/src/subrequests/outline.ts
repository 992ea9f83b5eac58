/**
 * `frontend.outline`: the build args, secrets and ssh agents the target
 * stage uses, as BuildKit's dockerfile2llb outline: the ARGs declared in the
 * stages the target needs and the global ARGs their FROM lines use (with what
 * those depend on), each with its value (the build arg given, else its
 * default) and its description (a `# NAME description` comment above it);
 * the secret and ssh ids of their `RUN --mount`s. Target first: a name
 * declared in several stages is described by the target's declaration.
 * Everything is listed by line.
 */
import type { Dockerfile } from '../parser/dockerfile.js';
import type { ArgDefinition } from '../parser/instructions.js';
import { ShellLex, envFromMap } from '../parser/shell.js';
import type { StageGraph } from '../parser/stages.js';
import { sourceLocation, type SourceLocation } from './results.js';
import { table } from './text.js';

export interface OutlineArg {
  name: string;
  description?: string;
  value?: string;
  location?: SourceLocation;
}

export interface OutlineMount {
  name: string;
  required?: boolean;
  location?: SourceLocation;
}

/** BuildKit's `outline.Outline` (JSON field names as its tags). */
export interface Outline {
  name?: string;
  description?: string;
  args?: OutlineArg[];
  secrets?: OutlineMount[];
  ssh?: OutlineMount[];
  /** The Dockerfile, base64 (Go's `[][]byte`). */
  sources?: string[];
}

export interface OutlineOptions {
  /** The global ARG scope of the FROM lines (predefined platform args, then the ARGs before the first FROM). */
  globalArgs: ReadonlyMap<string, string>;
  buildArgs: Record<string, string>;
}

export function dockerfileOutline(df: Dockerfile, graph: StageGraph, text: string, opts: OutlineOptions): Outline {
  const lex = new ShellLex(df.escapeToken);
  const expand = (word: string, env: ReadonlyMap<string, string>) => {
    try {
      return lex.processWord(word, envFromMap(env));
    } catch {
      return { result: word, matched: new Set<string>() };
    }
  };

  // The global ARGs (the last declaration of a name wins, as BuildKit's meta args) and the names each default uses.
  const meta = new Map<string, { def: ArgDefinition; line: number; deps: Set<string> }>();
  const metaScope = new Map<string, string>();
  for (const instr of df.metaArgs) {
    for (const def of instr.args) {
      const deps = def.value === undefined ? new Set<string>() : new Set(expand(def.value, metaScope).matched);
      deps.delete(def.key);
      const value = opts.globalArgs.get(def.key);
      if (value !== undefined) metaScope.set(def.key, value);
      meta.set(def.key, { def, line: instr.range.startLine, deps });
    }
  }

  const args = new Map<string, OutlineArg & { line: number }>();
  const useMeta = (name: string): void => {
    const m = meta.get(name);
    if (!m || args.has(name)) return;
    const value = opts.globalArgs.get(name);
    args.set(name, arg(name, value, m.def.docComment, m.line));
    for (const dep of m.deps) useMeta(dep);
  };
  const secrets = new Map<string, OutlineMount & { line: number }>();
  const ssh = new Map<string, OutlineMount & { line: number }>();

  for (const index of [...graph.order].reverse()) {
    const { stage } = graph.stages[index]!;
    for (const word of [stage.baseName, stage.platform ?? '']) for (const name of expand(word, opts.globalArgs).matched) useMeta(name);
    const scope = new Map<string, string>();
    for (const instr of stage.instructions) {
      const line = instr.range.startLine;
      if (instr.kind === 'ARG') {
        for (const def of instr.args) {
          const given = Object.hasOwn(opts.buildArgs, def.key) ? opts.buildArgs[def.key] : undefined;
          if (given === undefined && def.value === undefined && meta.has(def.key)) {
            // `ARG NAME` in a stage brings the global ARG into it.
            useMeta(def.key);
            const inherited = opts.globalArgs.get(def.key);
            if (inherited !== undefined) scope.set(def.key, inherited);
            continue;
          }
          const value = given ?? (def.value === undefined ? undefined : expand(def.value, scope).result);
          if (value !== undefined) scope.set(def.key, value);
          if (!args.has(def.key)) args.set(def.key, arg(def.key, value, def.docComment, line));
        }
      }
      if (instr.kind === 'RUN') {
        for (const m of instr.mounts) {
          if (m.type === 'secret') {
            const id = m.id || m.source || (m.target ? m.target.slice(m.target.lastIndexOf('/') + 1) : '');
            if (id && !secrets.has(id)) secrets.set(id, mount(id, m.required, line));
          }
          if (m.type === 'ssh') {
            const id = m.id || 'default';
            if (!ssh.has(id)) ssh.set(id, mount(id, m.required, line));
          }
        }
      }
    }
  }

  const target = graph.stages[graph.target]!.stage;
  const byLine = <T extends { line: number }>(m: Map<string, T>) => [...m.values()].sort((a, b) => a.line - b.line).map(({ line: _line, ...rest }) => rest);
  const listed = { args: byLine(args), secrets: byLine(secrets), ssh: byLine(ssh) };
  return {
    ...(target.name ? { name: target.name } : {}),
    ...(target.from.docComment ? { description: target.from.docComment } : {}),
    ...(listed.args.length > 0 ? { args: listed.args } : {}),
    ...(listed.secrets.length > 0 ? { secrets: listed.secrets } : {}),
    ...(listed.ssh.length > 0 ? { ssh: listed.ssh } : {}),
    sources: [Buffer.from(text).toString('base64')],
  };
}

function arg(name: string, value: string | undefined, description: string | undefined, line: number): OutlineArg & { line: number } {
  return { name, ...(description ? { description } : {}), ...(value !== undefined && value !== '' ? { value } : {}), location: sourceLocation(line, line), line };
}

function mount(name: string, required: boolean, line: number): OutlineMount & { line: number } {
  return { name, ...(required ? { required } : {}), location: sourceLocation(line, line), line };
}

/** The outline as buildx prints it (BuildKit's `outline.PrintOutline`). */
export function printOutline(o: Outline): string {
  let out = '';
  if (o.name || o.description) {
    const rows = [['TARGET:', o.name || '(default)'], ...(o.description ? [['DESCRIPTION:', o.description]] : [])];
    out += table(rows, 1) + '\n';
  }
  if (o.args?.length) out += table([['BUILD ARG', 'VALUE', 'DESCRIPTION'], ...o.args.map((a) => [a.name, a.value ?? '', a.description ?? ''])], 3) + '\n';
  if (o.secrets?.length) out += table([['SECRET', 'REQUIRED'], ...o.secrets.map((s) => [s.name, s.required ? 'true' : ''])], 3) + '\n';
  if (o.ssh?.length) out += table([['SSH', 'REQUIRED'], ...o.ssh.map((s) => [s.name, s.required ? 'true' : ''])], 3) + '\n';
  return out;
}
