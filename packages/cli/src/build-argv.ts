/**
 * The options of `bkt build` (and of the project and daemon options other
 * commands share) as data, and a parser of the common `bkt build` command
 * lines that needs no commander.
 *
 * program.ts declares these options to commander from this table, so help,
 * usage errors and every other command are commander's. `parseBuildArgv`
 * answers only for a `build` command line it reads exactly as commander
 * would (same operands, same option values, same keys, `BKT_HOST` read for
 * `--addr` as commander reads it); anything else — help, an unknown or
 * malformed option, `--`, a value a choice list or parser refuses — is
 * `undefined`, and commander parses it (and prints its help or error).
 * `build-argv.test.ts` checks the two agree.
 */
import type { Command, Option } from 'commander';
import { onePlatform } from './platform-flag.js';

/** One option, as declared to commander. */
export interface OptionSpec {
  /** commander's flags: `-C, --dir <dir>` (a value), `--check` (none), `--provenance [value]` (an optional value). */
  flags: string;
  description: string;
  /** Given again, each value is appended (default `[]`). */
  repeatable?: true;
  /** The allowed values. */
  choices?: readonly string[];
  /** Parses a value (`previous`: the value an earlier use gave). */
  parse?: (value: string, previous: string | undefined) => string;
  /** An environment variable commander reads when the option is not given. */
  env?: string;
}

/** Appends a repeated option's value. */
export const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Every command that reads a project: its directory, config file and store root. */
export const PROJECT_OPTIONS: readonly OptionSpec[] = [
  { flags: '-C, --dir <dir>', description: 'project directory (where bkt.config.* is)' },
  { flags: '--config <file>', description: 'config file to load instead of <dir>/bkt.config.{ts,mts,js,mjs,json}' },
  { flags: '--root <dir>', description: 'store root (default: /var/lib/bkt as root, else $XDG_DATA_HOME/bkt)' },
];

/** Commands that may run against bktd: its address (`--addr`, else `BKT_HOST`) and the TLS files of a tcp:// one. */
export const DAEMON_OPTIONS: readonly OptionSpec[] = [
  { flags: '--addr <address>', description: 'run against bktd at unix:///PATH or tcp://HOST:PORT (default: none, the build runs in this process)', env: 'BKT_HOST' },
  { flags: '--tlscacert <file>', description: 'tcp:// daemon: the CA certificate that signed the daemon\'s certificate' },
  { flags: '--tlscert <file>', description: 'tcp:// daemon: this client\'s certificate' },
  { flags: '--tlskey <file>', description: 'tcp:// daemon: this client\'s private key' },
];

/** `bkt build`'s own options, in help order (after the project and daemon options). */
export const BUILD_OPTIONS: readonly OptionSpec[] = [
  { flags: '-o, --output <spec>', description: 'output: type=local,dest=DIR | type=tar,dest=FILE|- | type=image,name=N[,push=true] | type=registry | type=oci|docker,dest=FILE (repeatable; CSV as buildx)', repeatable: true },
  { flags: '--progress <mode>', description: 'progress output (default: $BUILDKIT_PROGRESS, else auto)', choices: ['auto', 'tty', 'plain', 'rawjson', 'quiet'] },
  { flags: '--call <name>', description: 'Dockerfile build: print check (build-check warnings; exit 1 when there are any), outline (build args, secrets, ssh of the target) or targets (the stages) instead of building; NAME[,format=json]' },
  { flags: '--check', description: 'Dockerfile build: --call check' },
  { flags: '--no-cache', description: 'do not use cached results (new results are still recorded)' },
  { flags: '--llb <file>', description: 'solve a marshalled pb.Definition from FILE, or stdin with "-" (as buildctl build)' },
  { flags: '--local <name=dir>', description: 'a local directory for local://NAME sources (repeatable)', repeatable: true },
  { flags: '--cache-to <spec>', description: 'export the build cache: type=registry,ref=REF[,mode=min|max] | type=local,dest=DIR | type=inline (repeatable; CSV as buildx)', repeatable: true },
  { flags: '--explain', description: 'after the build, say why each step that ran missed the cache: the changed context file, build arg or env, base image digest, parent step (against the previous build of the same target)' },
  { flags: '--cache-from <spec>', description: 'import a build cache: type=registry,ref=REF | type=local,src=DIR | REF (repeatable; several are merged)', repeatable: true },
  { flags: '--metadata-file <file>', description: 'write the build result metadata (exporter response) as JSON' },
  { flags: '-f, --file <file>', description: 'Dockerfile build: the Dockerfile (default: CONTEXT/Dockerfile; "-" = stdin)' },
  { flags: '--target <stage>', description: 'Dockerfile build: the stage to build (default: the last)' },
  { flags: '--build-arg <key=value>', description: 'Dockerfile build: a build arg; KEY alone takes its value from the environment (repeatable)', repeatable: true },
  { flags: '--build-context <name=value>', description: 'Dockerfile build: a named context: a directory, docker-image://REF, oci-layout://…, a git or https URL (repeatable)', repeatable: true },
  { flags: '--secret <spec>', description: 'Dockerfile build: a secret for RUN --mount=type=secret: id=ID[,src=FILE|,env=VAR][,type=file|env] (repeatable)', repeatable: true },
  { flags: '--ssh <spec>', description: 'Dockerfile build: an ssh-agent for RUN --mount=type=ssh: default | ID=SOCKET | ID=KEY[,KEY] (repeatable)', repeatable: true },
  { flags: '-t, --tag <name>', description: 'the image name (repeatable); without --output, export type=image', repeatable: true },
  { flags: '--push', description: 'push the image (shorthand for --output type=registry)' },
  { flags: '--platform <platform>', description: 'the target platform (os/arch[/variant]; one: several in one build are not supported yet)', parse: onePlatform },
  { flags: '--list', description: 'list the targets of the config, with their descriptions' },
  { flags: '--label <key=value>', description: 'Dockerfile build: a label of the image (repeatable)', repeatable: true },
  { flags: '--no-cache-filter <stage>', description: 'Dockerfile build: do not use the cache for these stages (repeatable, or comma-separated)', repeatable: true },
  { flags: '--add-host <host:ip>', description: 'Dockerfile build: an /etc/hosts entry in RUN steps (repeatable)', repeatable: true },
  { flags: '--allow <entitlement>', description: 'grant the build network.host (RUN --network=host) or security.insecure (RUN --security=insecure) (repeatable)', repeatable: true },
  { flags: '--network <mode>', description: 'Dockerfile build: the network of RUN steps: default, none or host' },
  { flags: '--shm-size <size>', description: 'Dockerfile build: the size of /dev/shm in RUN steps (e.g. 64m)' },
  { flags: '--ulimit <name=soft:hard>', description: 'Dockerfile build: a ulimit of RUN steps (repeatable)', repeatable: true },
  { flags: '--pull', description: 'Dockerfile build: always look up base images in their registry (image-resolve-mode=pull)' },
  { flags: '--frontend <name>', description: 'Dockerfile build: the frontend (default dockerfile.v0; gateway.v0 runs the frontend image --opt source=IMAGE)' },
  { flags: '--opt <key=value>', description: 'Dockerfile build: a frontend attribute, as buildctl --opt (e.g. source=IMAGE, build-arg:K=V) (repeatable)', repeatable: true },
  { flags: '--iidfile <file>', description: 'write the image id (config digest) to FILE' },
  { flags: '--load', description: 'load the image into the local Docker engine (DOCKER_HOST, else /var/run/docker.sock), as docker buildx build --load' },
  { flags: '-q, --quiet', description: 'no progress output; print the image id (config digest) on stdout' },
  { flags: '--annotation <[type:]key=value>', description: 'an annotation of the image: KEY=VALUE (manifest) or TYPE[,TYPE][PLATFORM]:KEY=VALUE, TYPE manifest, manifest-descriptor, index or index-descriptor (repeatable)', repeatable: true },
  { flags: '--provenance [value]', description: 'attestations are not supported yet: only --provenance=false is accepted' },
  { flags: '--sbom [value]', description: 'attestations are not supported yet: only --sbom=false is accepted' },
  { flags: '--attest <spec>', description: 'attestations are not supported yet (refused)', repeatable: true },
  { flags: '--invoke <command>', description: 'run COMMAND in the build result attached to this terminal once the build succeeded (e.g. sh); on-error: a shell in the failed step instead; or KEY=VALUE,… (args, entrypoint, env, user, cwd, tty, on=error|always), as buildx' },
];

/** Declares `specs` to commander on `cmd`, in order (`OptionClass`: commander's `Option`, which the caller loaded). */
export function addOptions(cmd: Command, specs: readonly OptionSpec[], OptionClass: typeof Option): Command {
  for (const spec of specs) {
    if (spec.choices || spec.env !== undefined) {
      const option = new OptionClass(spec.flags, spec.description);
      if (spec.choices) option.choices(spec.choices);
      if (spec.env !== undefined) option.env(spec.env);
      cmd.addOption(option);
    } else if (spec.repeatable) {
      cmd.option(spec.flags, spec.description, collect, []);
    } else if (spec.parse) {
      cmd.option(spec.flags, spec.description, spec.parse);
    } else {
      cmd.option(spec.flags, spec.description);
    }
  }
  return cmd;
}

/** What commander derives from an option's flags, and how `addOptions` declares it. */
interface Flag {
  spec: OptionSpec;
  /** The key of the parsed options: the long name camel-cased, without `no-`. */
  key: string;
  negate: boolean;
  value: 'none' | 'required' | 'optional';
  /** As `addOptions` declares it: an `Option` with choices and/or an environment variable, a repeated value, a parsed value, or plain. */
  kind: 'option' | 'repeatable' | 'parse' | 'plain';
}

function flagOf(spec: OptionSpec): { names: string[]; flag: Flag } {
  const words = spec.flags.split(/[ ,|]+/).filter(Boolean);
  const names = words.filter((w) => w.startsWith('-'));
  const long = names.find((n) => n.startsWith('--'))!;
  const negate = long.startsWith('--no-');
  const key = long
    .slice(negate ? 5 : 2)
    .split('-')
    .map((w, i) => (i === 0 ? w : w[0]!.toUpperCase() + w.slice(1)))
    .join('');
  const value = spec.flags.includes('<') ? 'required' : spec.flags.includes('[') ? 'optional' : 'none';
  const kind = spec.choices || spec.env !== undefined ? 'option' : spec.repeatable ? 'repeatable' : spec.parse ? 'parse' : 'plain';
  return { names, flag: { spec, key, negate, value, kind } };
}

const BUILD_FLAGS: ReadonlyMap<string, Flag> = new Map(
  [...PROJECT_OPTIONS, ...DAEMON_OPTIONS, ...BUILD_OPTIONS].flatMap((spec) => {
    const { names, flag } = flagOf(spec);
    return names.map((n) => [n, flag] as const);
  }),
);

/** Every option once, in declaration order. */
const FLAGS: readonly Flag[] = [...new Set(BUILD_FLAGS.values())];

/** A `bkt build` command line as commander parses it: its operands (`command.args`) and option values (`opts()`). */
export interface ParsedBuild {
  args: string[];
  opts: Record<string, unknown>;
}

/** Commander's test for an argument that may be an option. */
const maybeOption = (arg: string): boolean => arg.length > 1 && arg[0] === '-';

/** Commander's test for a negative number (read as a value; no option of `bkt` or `bkt build` is a digit). */
const negativeNumber = (arg: string): boolean => /^-(\d+|\d*\.\d+)(e[+-]?\d+)?$/.test(arg);

/** A value commander would refuse (a choice not listed, a parser's error). */
const REFUSED = Symbol('refused');

/**
 * The value commander stores for `flag` given `value` (`null`: an optional
 * value left out; `undefined`: a flag without value), or `REFUSED`.
 */
function valueOf(flag: Flag, value: string | null | undefined, previous: unknown): unknown {
  const { spec } = flag;
  if (value != null) {
    switch (flag.kind) {
      case 'option':
        if (spec.choices && !spec.choices.includes(value)) return REFUSED;
        return value;
      case 'repeatable':
        return collect(value, previous as string[]);
      case 'parse':
        try {
          return spec.parse!(value, previous as string | undefined);
        } catch {
          return REFUSED;
        }
      case 'plain':
        return value;
    }
  }
  return flag.negate ? false : flag.value === 'required' ? '' : true;
}

/**
 * `argv` (without `node` and the script) when it is a `bkt build` command
 * line this parser reads exactly as commander does; `undefined` otherwise
 * (commander then parses it). As commander, an option's environment variable
 * (`BKT_HOST` for `--addr`) gives its value when the command line does not.
 */
export function parseBuildArgv(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedBuild | undefined {
  if (argv[0] !== 'build') return undefined;
  const opts: Record<string, unknown> = {};
  for (const flag of FLAGS) {
    // commander's defaults: [] for a repeatable option, true for a `--no-x` that has no `--x`.
    if (flag.kind === 'repeatable') opts[flag.key] = [];
    else if (flag.negate) opts[flag.key] = true;
  }
  const fromCommandLine = new Set<string>();
  const set = (flag: Flag, value: string | null | undefined): boolean => {
    const parsed = valueOf(flag, value, opts[flag.key]);
    if (parsed === REFUSED) return false;
    opts[flag.key] = parsed;
    fromCommandLine.add(flag.key);
    return true;
  };
  const args: string[] = [];
  let group: string | undefined; // the rest of a short-option group (`-qt x`: `-t`)
  let i = 1;
  while (i < argv.length || group !== undefined) {
    const arg = group ?? argv[i++]!;
    group = undefined;
    if (arg === '--') return undefined;
    if (!maybeOption(arg)) {
      args.push(arg);
      continue;
    }
    const flag = BUILD_FLAGS.get(arg);
    if (flag) {
      let value: string | null | undefined;
      if (flag.value === 'required') {
        // As commander: the next argument is the value, whatever it looks like.
        if (i >= argv.length) return undefined;
        value = argv[i++]!;
      } else if (flag.value === 'optional') {
        value = null;
        if (i < argv.length && (!maybeOption(argv[i]!) || negativeNumber(argv[i]!))) value = argv[i++]!;
      }
      if (!set(flag, value)) return undefined;
      continue;
    }
    if (arg.length > 2 && arg[1] !== '-') {
      // A short-option group: `-tNAME` (a value), or `-q` followed by the rest (`-qt`).
      const first = BUILD_FLAGS.get(arg.slice(0, 2));
      if (!first) return undefined;
      if (first.value === 'none') {
        if (!set(first, undefined)) return undefined;
        group = `-${arg.slice(2)}`;
      } else if (!set(first, arg.slice(2))) {
        return undefined;
      }
      continue;
    }
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 2) {
      const long = BUILD_FLAGS.get(arg.slice(0, eq));
      if (!long || long.value === 'none' || !set(long, arg.slice(eq + 1))) return undefined;
      continue;
    }
    // An unknown option, `--help`, `-h`: commander's.
    return undefined;
  }
  // After the command line, as commander: an environment variable for an option it did not give.
  for (const flag of FLAGS) {
    const name = flag.spec.env;
    if (name === undefined || !(name in env) || fromCommandLine.has(flag.key)) continue;
    const parsed = valueOf(flag, flag.value === 'none' ? undefined : env[name]!, opts[flag.key]);
    if (parsed === REFUSED) return undefined;
    opts[flag.key] = parsed;
  }
  return { args, opts };
}
