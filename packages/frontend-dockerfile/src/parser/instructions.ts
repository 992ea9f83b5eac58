import { type Heredoc, type RawNode, chompHeredocContent, parseHeredoc } from './ast.js';
import { LocalParseError, type SourceRange } from './errors.js';
import { InstructionFlags } from './flags.js';
import { type RunMount, parseMount } from './mounts.js';
import { suggest } from './suggest.js';
import { parseDuration, parseInt32 } from './units.js';

/**
 * Typed instructions (BuildKit's frontend/dockerfile/instructions): one
 * interface per Dockerfile instruction, built from a RawNode with its flags
 * parsed and its arguments checked. Values are as written: variables are
 * substituted later by expandInstruction.
 */

export type InstructionKind =
  | 'ADD' | 'ARG' | 'CMD' | 'COPY' | 'ENTRYPOINT' | 'ENV' | 'EXPOSE' | 'FROM' | 'HEALTHCHECK'
  | 'LABEL' | 'MAINTAINER' | 'ONBUILD' | 'RUN' | 'SHELL' | 'STOPSIGNAL' | 'USER' | 'VOLUME' | 'WORKDIR';

export const INSTRUCTION_KINDS: readonly InstructionKind[] = [
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK',
  'LABEL', 'MAINTAINER', 'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
];

interface Base<K extends InstructionKind> {
  kind: K;
  /** The keyword as written (`RUN`, `run`). */
  keyword: string;
  /** The instruction's lines in the Dockerfile (heredoc bodies included). */
  range: SourceRange;
  /** The logical line, continuations joined and trimmed. */
  original: string;
  /** Comment lines right above the instruction. */
  comments: string[];
}

export interface KeyValue {
  key: string;
  value: string;
  /** Written in the legacy `KEY value` form (no `=`). */
  legacy: boolean;
}

export interface ArgDefinition {
  key: string;
  /** The default; undefined for `ARG NAME` without one. */
  value?: string;
  /** From a `# NAME description` comment above the ARG. */
  docComment?: string;
}

/** A heredoc used as a file by RUN (the command itself or an extra fd/file). */
export interface InlineFile {
  name: string;
  data: string;
  /** `<<-`: strip leading tabs from `data` before use. */
  chomp: boolean;
  /** The delimiter was unquoted. */
  expand: boolean;
  fileDescriptor: number;
}

/** A COPY/ADD source given inline by a heredoc. */
export interface SourceContent {
  /** The heredoc name, used as the file name. */
  path: string;
  /** The body (tabs already stripped for `<<-`). */
  data: string;
  /** Expand variables in `data` (the delimiter was unquoted). */
  expand: boolean;
}

export interface FromInstruction extends Base<'FROM'> {
  /** The image, stage name or `scratch`, as written (may hold ARG references). */
  baseName: string;
  /** Stage name (lower-cased) from `AS name`. */
  stageName?: string;
  /** The `AS` keyword as written, for the FromAsCasing check. */
  asKeyword?: string;
  /** The name as written before lower-casing, for the StageNameCasing check. */
  stageNameAsWritten?: string;
  platform?: string;
  /** From a `# name description` comment above the FROM. */
  docComment?: string;
}

export interface ArgInstruction extends Base<'ARG'> {
  args: ArgDefinition[];
}
export interface EnvInstruction extends Base<'ENV'> {
  env: KeyValue[];
}
export interface LabelInstruction extends Base<'LABEL'> {
  labels: KeyValue[];
}
export interface MaintainerInstruction extends Base<'MAINTAINER'> {
  maintainer: string;
}

export type NetworkMode = 'default' | 'none' | 'host';
export type SecurityMode = 'sandbox' | 'insecure';

interface CommandLine {
  /** Shell form: one element, the command string; exec form: the argv. */
  command: string[];
  /** Shell form: the command runs through the image's shell. */
  shellForm: boolean;
}

export interface RunInstruction extends Base<'RUN'>, CommandLine {
  files: InlineFile[];
  mounts: RunMount[];
  /** The `--mount` values as written (re-parsed after variable expansion). */
  mountSpecs: string[];
  network: NetworkMode;
  security: SecurityMode;
  /** Names of the flags given. */
  flagsUsed: string[];
}
export interface CmdInstruction extends Base<'CMD'>, CommandLine {}
export interface EntrypointInstruction extends Base<'ENTRYPOINT'>, CommandLine {}

interface SourcesAndDest {
  /** Source paths, URLs or git refs (heredoc sources are in `contents`). */
  sources: string[];
  contents: SourceContent[];
  dest: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  excludes: string[];
}

export interface CopyInstruction extends Base<'COPY'>, SourcesAndDest {
  /** A stage name, stage index or image. */
  from?: string;
  parents: boolean;
}
export interface AddInstruction extends Base<'ADD'>, SourcesAndDest {
  checksum?: string;
  /** For git sources; undefined when not given. */
  keepGitDir?: boolean;
  /** Extract local/remote archives; undefined = BuildKit's default (local archives only). */
  unpack?: boolean;
}

export interface WorkdirInstruction extends Base<'WORKDIR'> {
  path: string;
}
export interface UserInstruction extends Base<'USER'> {
  user: string;
}
export interface ExposeInstruction extends Base<'EXPOSE'> {
  /** Port specs as written (`80`, `53/udp`, `${PORT}`), sorted as BuildKit does. */
  ports: string[];
}
export interface ShellInstruction extends Base<'SHELL'> {
  shell: string[];
}

/** The image config Healthcheck (durations in nanoseconds, 0 = inherit the default). */
export interface HealthConfig {
  /** `["NONE"]`, `["CMD", argv…]` or `["CMD-SHELL", command]`. */
  test: string[];
  interval: number;
  timeout: number;
  startPeriod: number;
  startInterval: number;
  retries: number;
}
export interface HealthcheckInstruction extends Base<'HEALTHCHECK'> {
  health: HealthConfig;
}
export interface VolumeInstruction extends Base<'VOLUME'> {
  volumes: string[];
}
export interface StopSignalInstruction extends Base<'STOPSIGNAL'> {
  signal: string;
}
export interface OnbuildInstruction extends Base<'ONBUILD'> {
  /** The trigger as it goes into the image config's OnBuild (heredoc bodies appended). */
  expression: string;
}

export type Instruction =
  | AddInstruction | ArgInstruction | CmdInstruction | CopyInstruction | EntrypointInstruction
  | EnvInstruction | ExposeInstruction | FromInstruction | HealthcheckInstruction | LabelInstruction
  | MaintainerInstruction | OnbuildInstruction | RunInstruction | ShellInstruction | StopSignalInstruction
  | UserInstruction | VolumeInstruction | WorkdirInstruction;

/** Builds the typed instruction of a raw node. Throws LocalParseError (with the offending token when known). */
export function parseInstruction(node: RawNode): Instruction {
  const kind = node.command.toUpperCase() as InstructionKind;
  if (!INSTRUCTION_KINDS.includes(kind)) {
    const hint = suggest(node.command, INSTRUCTION_KINDS, false);
    throw new LocalParseError(`unknown instruction: ${node.command}${hint ? ` (did you mean ${hint}?)` : ''}`, node.command);
  }
  const base = {
    keyword: node.command,
    range: { startLine: node.startLine, endLine: node.endLine },
    original: node.original.trim(),
    comments: node.comments,
  };
  const flags = new InstructionFlags(node.flags);
  const args = node.args;

  switch (kind) {
    case 'ENV': {
      flags.parse();
      return { kind, ...base, env: parseKeyValues(args, 'ENV') };
    }
    case 'LABEL': {
      flags.parse();
      return { kind, ...base, labels: parseKeyValues(args, 'LABEL') };
    }
    case 'MAINTAINER': {
      if (args.length !== 1) throw exactlyOne('MAINTAINER');
      flags.parse();
      return { kind, ...base, maintainer: args[0] };
    }
    case 'ADD': {
      if (args.length < 2) throw noDestination('ADD');
      flags.string('chown');
      flags.string('chmod');
      flags.bool('link');
      flags.bool('keep-git-dir');
      flags.string('checksum');
      flags.bool('unpack');
      flags.strings('exclude');
      flags.parse();
      const sd = sourcesAndDest(node, 'ADD');
      return {
        kind, ...base, ...sd,
        ...optional('chown', flags.getString('chown')),
        ...optional('chmod', flags.getString('chmod')),
        link: flags.getBool('link'),
        excludes: flags.getStrings('exclude'),
        ...optional('checksum', flags.getString('checksum')),
        ...(flags.isUsed('keep-git-dir') ? { keepGitDir: flags.getBool('keep-git-dir') } : {}),
        ...(flags.isUsed('unpack') ? { unpack: flags.getBool('unpack') } : {}),
      };
    }
    case 'COPY': {
      if (args.length < 2) throw noDestination('COPY');
      flags.string('chown');
      flags.string('from');
      flags.string('chmod');
      flags.bool('link');
      flags.strings('exclude');
      flags.bool('parents');
      flags.parse();
      const sd = sourcesAndDest(node, 'COPY');
      return {
        kind, ...base, ...sd,
        ...optional('from', flags.getString('from')),
        ...optional('chown', flags.getString('chown')),
        ...optional('chmod', flags.getString('chmod')),
        link: flags.getBool('link'),
        parents: flags.getBool('parents'),
        excludes: flags.getStrings('exclude'),
      };
    }
    case 'FROM':
      return parseFrom(node, flags, base);
    case 'ONBUILD': {
      if (args.length === 0) throw atLeastOne('ONBUILD');
      flags.parse();
      const trigger = args[0].trim().toUpperCase();
      if (trigger === 'ONBUILD') throw new LocalParseError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed", args[0]);
      if (trigger === 'MAINTAINER' || trigger === 'FROM') throw new LocalParseError(`${trigger} isn't allowed as an ONBUILD trigger`, args[0]);
      let expression = node.original.replace(/^\s*ONBUILD\s*/i, '');
      for (const doc of node.heredocs) expression += `\n${doc.content}${doc.name}`;
      return { kind, ...base, expression };
    }
    case 'WORKDIR': {
      if (args.length !== 1) throw exactlyOne('WORKDIR');
      flags.parse();
      return { kind, ...base, path: args[0] };
    }
    case 'RUN':
      return parseRun(node, flags, base);
    case 'CMD': {
      flags.parse();
      return { kind, ...base, ...commandLine(node) };
    }
    case 'ENTRYPOINT': {
      flags.parse();
      return { kind, ...base, ...commandLine(node) };
    }
    case 'HEALTHCHECK':
      return { kind, ...base, health: parseHealthcheck(node, flags) };
    case 'EXPOSE': {
      if (args.length === 0) throw atLeastOne('EXPOSE');
      flags.parse();
      return { kind, ...base, ports: [...args].sort(compareGoStrings) };
    }
    case 'USER': {
      if (args.length !== 1) throw exactlyOne('USER');
      flags.parse();
      return { kind, ...base, user: args[0] };
    }
    case 'VOLUME': {
      if (args.length === 0) throw atLeastOne('VOLUME');
      flags.parse();
      const volumes = args.map((v) => v.trim());
      if (volumes.some((v) => v === '')) throw new LocalParseError('VOLUME specified can not be an empty string');
      return { kind, ...base, volumes };
    }
    case 'STOPSIGNAL': {
      if (args.length !== 1) throw exactlyOne('STOPSIGNAL');
      // BuildKit does not read flags on STOPSIGNAL; neither do we.
      return { kind, ...base, signal: args[0] };
    }
    case 'ARG':
      return parseArg(node, flags, base);
    case 'SHELL': {
      flags.parse();
      if (args.length === 0) throw atLeastOne('SHELL');
      if (!node.json) throw new LocalParseError(`SHELL requires the arguments to be in JSON form`, args[0]);
      return { kind, ...base, shell: [...args] };
    }
  }
}

type BaseFields = Omit<Base<InstructionKind>, 'kind'>;

function optional<K extends string>(key: K, value: string): { [P in K]?: string } {
  return (value === '' ? {} : { [key]: value }) as { [P in K]?: string };
}

function parseKeyValues(args: string[], name: string): KeyValue[] {
  if (args.length === 0) throw atLeastOne(name);
  if (args.length % 3 !== 0) throw new LocalParseError(`Bad input to ${name}, too many arguments`);
  const out: KeyValue[] = [];
  for (let j = 0; j < args.length; j += 3) {
    if (args[j].length === 0) throw new LocalParseError(`${name} names can not be blank`);
    out.push({ key: args[j], value: args[j + 1], legacy: args[j + 2] === '' });
  }
  return out;
}

function sourcesAndDest(node: RawNode, command: string): Pick<SourcesAndDest, 'sources' | 'contents' | 'dest'> {
  const srcs = node.args.slice(0, -1);
  const dest = node.args[node.args.length - 1];
  if (safeParseHeredoc(dest)) throw new LocalParseError(`${command} cannot accept a heredoc as a destination`, dest);
  const byName = new Map<string, Heredoc>();
  for (const doc of node.heredocs) byName.set(doc.name, doc);
  const sources: string[] = [];
  const contents: SourceContent[] = [];
  for (const src of srcs) {
    const doc = node.json ? undefined : safeParseHeredoc(src);
    if (doc) {
      let data = byName.get(doc.name)?.content ?? '';
      if (doc.chomp) data = chompHeredocContent(data);
      contents.push({ path: doc.name, data, expand: doc.expand });
    } else {
      sources.push(src);
    }
  }
  return { sources, contents, dest };
}

/** parseHeredoc without the error on a malformed quote (BuildKit's MustParseHeredoc). */
function safeParseHeredoc(word: string): Heredoc | undefined {
  try {
    return parseHeredoc(word);
  } catch {
    return undefined;
  }
}

const VALID_STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

function parseFrom(node: RawNode, flags: InstructionFlags, base: BaseFields): FromInstruction {
  const args = node.args;
  let stageName: string | undefined;
  if (args.length === 3 && args[1].toLowerCase() === 'as') {
    stageName = args[2].toLowerCase();
    if (!VALID_STAGE_NAME.test(stageName)) {
      throw new LocalParseError(`invalid name for build stage: ${JSON.stringify(args[2])}, name can't start with a number or contain symbols`, args[2]);
    }
  } else if (args.length !== 1) {
    throw new LocalParseError('FROM requires either one or three arguments', args[3] ?? args[1]);
  }
  flags.string('platform');
  flags.parse();
  const docComment = stageName ? docCommentFor(node.comments, stageName) : undefined;
  return {
    kind: 'FROM',
    ...base,
    baseName: args[0],
    ...(stageName ? { stageName, asKeyword: args[1], stageNameAsWritten: args[2] } : {}),
    ...optional('platform', flags.getString('platform')),
    ...(docComment ? { docComment } : {}),
  };
}

function parseArg(node: RawNode, flags: InstructionFlags, base: BaseFields): ArgInstruction {
  if (node.args.length < 1) throw atLeastOne('ARG');
  flags.parse();
  const args: ArgDefinition[] = node.args.map((arg) => {
    const eq = arg.indexOf('=');
    const key = eq < 0 ? arg : arg.slice(0, eq);
    if (eq >= 0 && key.length === 0) throw new LocalParseError('ARG names can not be blank', arg);
    const docComment = docCommentFor(node.comments, key);
    return { key, ...(eq >= 0 ? { value: arg.slice(eq + 1) } : {}), ...(docComment ? { docComment } : {}) };
  });
  return { kind: 'ARG', ...base, args };
}

function docCommentFor(comments: string[], name: string): string | undefined {
  if (name === '') return undefined;
  for (const line of comments) if (line.startsWith(name + ' ')) return line.slice(name.length + 1);
  return undefined;
}

function commandLine(node: RawNode): CommandLine {
  if (node.args.length === 0) return { command: [], shellForm: !node.json };
  if (node.json) return { command: [...node.args], shellForm: false };
  return { command: [node.args.join(' ')], shellForm: true };
}

function parseRun(node: RawNode, flags: InstructionFlags, base: BaseFields): RunInstruction {
  flags.strings('mount');
  flags.string('network', 'default');
  flags.string('security', 'sandbox');
  flags.parse();
  const mountSpecs = flags.getStrings('mount');
  const mounts = mountSpecs.map((spec) => parseMount(spec));
  const network = flags.getString('network');
  if (network !== 'default' && network !== 'none' && network !== 'host') {
    throw new LocalParseError(`invalid network mode ${JSON.stringify(network)}`, '--network');
  }
  const security = flags.getString('security');
  if (security !== 'sandbox' && security !== 'insecure') {
    throw new LocalParseError(`security ${JSON.stringify(security)} is not valid`, '--security');
  }
  const files: InlineFile[] = node.heredocs.map((doc) => ({
    name: doc.name,
    data: doc.content,
    chomp: doc.chomp,
    expand: doc.expand,
    fileDescriptor: doc.fileDescriptor,
  }));
  return {
    kind: 'RUN',
    ...base,
    ...commandLine(node),
    files,
    mounts,
    mountSpecs,
    network,
    security,
    flagsUsed: flags.usedFlags(),
  };
}

function parseHealthcheck(node: RawNode, flags: InstructionFlags): HealthConfig {
  if (node.args.length === 0) throw atLeastOne('HEALTHCHECK');
  const typ = node.args[0].toUpperCase();
  const rest = node.args.slice(1);
  const health: HealthConfig = { test: [], interval: 0, timeout: 0, startPeriod: 0, startInterval: 0, retries: 0 };
  if (typ === 'NONE') {
    if (rest.length !== 0) throw new LocalParseError('HEALTHCHECK NONE takes no arguments', rest[0]);
    health.test = ['NONE'];
    return health;
  }
  flags.string('interval');
  flags.string('timeout');
  flags.string('start-period');
  flags.string('start-interval');
  flags.string('retries');
  flags.parse();
  if (typ !== 'CMD') throw new LocalParseError(`Unknown type ${JSON.stringify(typ)} in HEALTHCHECK (try CMD)`, node.args[0]);
  const cmd = node.json ? rest : rest.length === 0 ? [] : [rest.join(' ')];
  if (cmd.length === 0) throw new LocalParseError('Missing command after HEALTHCHECK CMD', node.args[0]);
  health.test = [node.json ? 'CMD' : 'CMD-SHELL', ...cmd];
  health.interval = interval(flags, 'interval');
  health.timeout = interval(flags, 'timeout');
  health.startPeriod = interval(flags, 'start-period');
  health.startInterval = interval(flags, 'start-interval');
  const retries = flags.getString('retries');
  if (retries !== '') {
    const n = parseInt32(retries);
    if (n === undefined) throw new LocalParseError(`strconv.ParseInt: parsing ${JSON.stringify(retries)}: invalid syntax`, '--retries');
    if (n < 0) throw new LocalParseError(`--retries cannot be negative (${n})`, '--retries');
    health.retries = n;
  }
  return health;
}

/** A HEALTHCHECK duration flag in nanoseconds: 0 when absent or zero, at least 1ms otherwise. */
function interval(flags: InstructionFlags, name: string): number {
  const s = flags.getString(name);
  if (s === '') return 0;
  const d = parseDuration(s);
  if (d === undefined) throw new LocalParseError(`time: invalid duration ${JSON.stringify(s)}`, `--${name}`);
  if (d === 0) return 0;
  if (d < 1e6) throw new LocalParseError(`Interval "${name}" cannot be less than 1ms`, `--${name}`);
  return d;
}

/** Go's byte-wise string order (UTF-8 order equals code point order). */
function compareGoStrings(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0) as number);
  const y = Array.from(b, (c) => c.codePointAt(0) as number);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function exactlyOne(command: string): LocalParseError {
  return new LocalParseError(`${command} requires exactly one argument`);
}
function atLeastOne(command: string): LocalParseError {
  return new LocalParseError(`${command} requires at least one argument`);
}
function noDestination(command: string): LocalParseError {
  return new LocalParseError(`${command} requires at least two arguments, but only one was provided. Destination could not be determined`);
}
