import type { Platform } from '@bkt/core';
import { BktError, Pacer, isBktError } from '@bkt/core';
import { compilePatterns, parseDockerignore } from '@bkt/fsutil';
import { type State, SourceMap, git, http, image, local, marshalPaced, ociLayout, scratch } from '@bkt/llb';
import { formatPlatform, hostPlatform, normalizePlatform, normalizeReference, splitReference } from '@bkt/oci';
import type * as pb from '@bkt/api/pb';
import { type Dockerfile, parseDockerfilePaced, parseInstructions } from '../parser/dockerfile.js';
import { DockerfileParseError, locatedError } from '../parser/errors.js';
import type { Instruction } from '../parser/instructions.js';
import { platformOrUndefined } from '../parser/platforms.js';
import { type LintWarning, Linter } from '../parser/rules.js';
import { ExpansionBudget, envFromMap } from '../parser/shell.js';
import { type StageGraph, resolveStagesPaced } from '../parser/stages.js';
import { globalArgs as computeGlobalArgs } from '../parser/checks.js';
import { type FrontendOptions, parseFrontendAttrs } from './attrs.js';
import { dispatchInstruction, dispatchUser, dispatchWorkdir } from './dispatch.js';
import { checkBasePlatform } from './base-platform.js';
import { parseGitRef } from './git.js';
import { inputContext } from './input-context.js';
import { DEFAULT_PATH, type DockerImage, cloneImage, emptyImage, withHistory, envKey, envValue, imagePlatform, parseImageConfig, serializeImage } from './image.js';
import { type ConvertContext, type DispatchState, location, prefixCommand, shellLex } from './state.js';

/**
 * Dockerfile → LLB, as BuildKit's dockerfile2llb: stages resolved to a graph
 * (only those the target needs, independent ones as independent branches),
 * base image configs inherited, every instruction dispatched onto an LLB
 * state, and the image config with its history built alongside.
 */

export type ResolveMode = FrontendOptions['resolveMode'];

/** Resolves an image (`docker.io/library/alpine:3` or `oci-layout://name@sha256:…`) to its pinned reference and config. */
export type ImageConfigResolver = (ref: string, opts: { platform: Platform; resolveMode: ResolveMode }) => Promise<{ ref?: string; digest: string; config: Uint8Array }>;

export interface ConvertOptions extends Partial<FrontendOptions> {
  /** The Dockerfile's name in messages and source locations (default `Dockerfile`). */
  filename?: string;
  /** Base image configs; without it every image is taken as having an empty config. */
  resolveImageConfig?: ImageConfigResolver;
  /** `.dockerignore` patterns of the main context. */
  excludes?: string[];
  /** The build context in place of the client's `contextKey` directory (a frontend input); `excludes` do not apply to it. */
  mainContext?: State;
  /** The frontend inputs as states, for `input:INPUT` named contexts. */
  inputs?: Readonly<Record<string, State>>;
  /** The `.dockerignore` text of a client directory (for `local:` named contexts); undefined when absent. */
  readDockerignore?: (localName: string) => Promise<string | undefined>;
  /** The build platform (default: the host's). */
  buildPlatform?: Platform;
  /** Cancels the conversion: it stops within a few milliseconds of work with the signal's reason. */
  signal?: AbortSignal;
}

export interface ConvertResult {
  /** The target stage's final state. */
  state: State;
  /** The marshalled definition (target platform as default, source locations included). */
  definition: pb.Definition;
  /** The image config of the target. */
  image: DockerImage;
  /** Its JSON bytes (the `containerimage.config` metadata). */
  imageConfig: Uint8Array;
  /** Build-check warnings (with `check=error=true` the conversion fails instead). */
  warnings: LintWarning[];
  dockerfile: Dockerfile;
  sourceMap: SourceMap;
}

/** Converts a Dockerfile; throws DockerfileParseError (file:line) for what BuildKit refuses. */
export async function convertDockerfile(text: string, options: ConvertOptions = {}): Promise<ConvertResult> {
  const opts: FrontendOptions = { ...parseFrontendAttrs({}), ...stripUndefined(options) };
  const filename = options.filename ?? 'Dockerfile';
  if (text.trim() === '') throw new BktError('INVALID_ARGUMENT', `${filename}: the Dockerfile cannot be empty`, { file: filename });
  const targetPlatform = opts.targetPlatform ?? hostPlatform();
  const buildPlatform = options.buildPlatform ?? hostPlatform();
  const checkOpts = { buildArgs: opts.buildArgs, targetPlatform, buildPlatform, ...(opts.target ? { target: opts.target } : {}) };

  const pacer = new Pacer(options.signal);
  await pacer.pause();
  const df = await parseDockerfilePaced(text, { filename, skipChecks: true, ...(opts.check !== undefined ? { check: opts.check } : {}) }, pacer);
  await pacer.pause();
  const gargs = computeGlobalArgs(df, checkOpts);
  const graph = await resolveStagesPaced(df, { globalArgs: envFromMap(gargs), ...(opts.target ? { target: opts.target } : {}) }, pacer);

  const sourceMap = new SourceMap(filename, 'Dockerfile', new TextEncoder().encode(text));
  const epoch = sourceDateEpoch(opts.buildArgs, gargs);
  const ctx: ConvertContext = {
    opts,
    filename,
    lines: df.lines,
    escapeToken: df.escapeToken,
    sourceMap,
    globalArgs: gargs,
    buildContext:
      options.mainContext ??
      local(opts.contextKey, {
        sharedKeyHint: opts.contextKey,
        customName: '[internal] load build context',
        ...(options.excludes && options.excludes.length > 0 ? { exclude: options.excludes } : {}),
      }),
    targetPlatform,
    ...(epoch ? { epoch } : {}),
    ...(proxyEnv(opts.buildArgs) ? { proxyEnv: proxyEnv(opts.buildArgs) } : {}),
    lint: new Linter(df.check),
    ...(!options.mainContext && options.excludes && options.excludes.length > 0 ? { ignoreMatcher: compilePatterns(options.excludes, '.dockerignore') } : {}),
    linkCount: 0,
    expansionBudget: new ExpansionBudget(),
    stateFor: () => {
      throw new BktError('INTERNAL', 'stateFor used before the stages were built');
    },
  };

  const conv = new Converter(ctx, df, graph, options, pacer);
  const target = await conv.run();
  await pacer.pause();

  // Build checks, now that base image environments are known (for UndefinedVar).
  const checked = await parseDockerfilePaced(
    text,
    { filename, ...checkOpts, ...(opts.check !== undefined ? { check: opts.check } : {}), imageEnv: (ref) => conv.imageEnv(ref) },
    pacer,
  );
  await pacer.pause();
  const warnings = [...checked.warnings, ...ctx.lint.warnings].sort((a, b) => a.range.startLine - b.range.startLine);
  if (checked.check.error && ctx.lint.warnings.length > 0) {
    const rules = [...new Set(warnings.map((w) => w.rule))].sort();
    throw locatedError(`lint violation found for rules: ${rules.join(', ')}`, filename, df.lines, ctx.lint.warnings[0].range);
  }

  const img = target.image;
  if (Object.keys(opts.labels).length > 0) img.config.Labels = { ...img.config.Labels, ...opts.labels };
  if (opts.targetPlatform) {
    const p = opts.targetPlatform;
    const sameOsArch = p.os === img.os && p.architecture === img.architecture;
    img.os = p.os;
    img.architecture = p.architecture;
    if (p.variant || !sameOsArch) setOrDelete(img, 'variant', p.variant);
  }
  const imageConfig = serializeImage(withHistory(img));
  await pacer.pause();
  let definition: pb.Definition;
  try {
    definition = await marshalPaced(target.state, { platform: targetPlatform }, pacer);
  } catch (err) {
    // A definition past its bound names the op's Dockerfile line.
    const line = isBktError(err) && err.details.file === filename ? err.details.line : undefined;
    if (line === undefined) throw err;
    throw locatedError((err as Error).message, filename, df.lines, { startLine: line, endLine: line });
  }
  await pacer.pause();
  return { state: target.state, definition, image: img, imageConfig, warnings, dockerfile: checked, sourceMap };
}

function setOrDelete<K extends 'variant'>(img: DockerImage, key: K, value: string | undefined): void {
  if (value) img[key] = value;
  else delete img[key];
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** `SOURCE_DATE_EPOCH` (build arg or global ARG) as a time; undefined when unset or empty. */
function sourceDateEpoch(buildArgs: Record<string, string>, gargs: Map<string, string>): Date | undefined {
  const v = buildArgs.SOURCE_DATE_EPOCH ?? gargs.get('SOURCE_DATE_EPOCH');
  if (v === undefined || v === '') return undefined;
  if (!/^-?\d+$/.test(v)) throw new BktError('INVALID_ARGUMENT', `invalid SOURCE_DATE_EPOCH: ${v} (want seconds since the epoch)`, { attribute: 'build-arg:SOURCE_DATE_EPOCH' });
  return new Date(Number(v) * 1000);
}

/** The proxy variables of the build args (any case), given to RUNs outside their history (BuildKit's proxyEnvFromBuildArgs). */
function proxyEnv(buildArgs: Record<string, string>): ConvertContext['proxyEnv'] {
  const out: NonNullable<ConvertContext['proxyEnv']> = {};
  let set = false;
  for (const k of Object.keys(buildArgs).sort()) {
    const v = buildArgs[k];
    switch (k.toLowerCase()) {
      case 'http_proxy': out.httpProxy = v; set = true; break;
      case 'https_proxy': out.httpsProxy = v; set = true; break;
      case 'ftp_proxy': out.ftpProxy = v; set = true; break;
      case 'no_proxy': out.noProxy = v; set = true; break;
      case 'all_proxy': out.allProxy = v; set = true; break;
    }
  }
  return set ? out : undefined;
}

/** The lookup key of a named context: the familiar image name without `:latest` (BuildKit's NamedContext). */
function contextName(name: string): string {
  let n = name.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
  if (n.endsWith(':latest')) n = n.slice(0, -':latest'.length);
  return n;
}

class Converter {
  readonly states: DispatchState[] = [];
  readonly externals = new Map<string, DispatchState>();
  readonly byName = new Map<string, DispatchState>();
  /** Image environments by the (expanded) base name, for the UndefinedVar check. */
  readonly envs = new Map<string, string[]>();

  constructor(
    readonly ctx: ConvertContext,
    readonly df: Dockerfile,
    readonly graph: StageGraph,
    readonly options: ConvertOptions,
    readonly pacer: Pacer,
  ) {
    ctx.stateFor = (from) => this.stateFor(from);
  }

  imageEnv(ref: string): string[] | undefined {
    return this.envs.get(ref);
  }

  async run(): Promise<DispatchState> {
    const { ctx, df, graph } = this;
    // Dispatch states, one per stage, as BuildKit's buildDispatchStates.
    for (const rs of graph.stages) {
      const stage = rs.stage;
      let platform: Platform | undefined;
      if (stage.platform !== undefined) {
        const lex = shellLex(ctx);
        let value: string;
        try {
          value = lex.processWord(stage.platform, envFromMap(ctx.globalArgs)).result;
        } catch (err) {
          throw this.at(stage.from, `failed to process arguments for platform ${stage.platform}: ${(err as Error).message}`);
        }
        if (value === '') throw this.at(stage.from, `empty platform value from expression ${stage.platform}`);
        const p = platformOrUndefined(value);
        if (!p) throw this.at(stage.from, `failed to parse platform ${stage.platform}: "${value}": unknown operating system or architecture`);
        platform = p;
      }
      const d = this.newState(stage.index, rs.baseName, stage.from.range, platform);
      d.stage = stage;
      d.stageName = stage.name ?? `stage-${stage.index}`;
      if (rs.base.kind === 'stage') d.base = this.states[rs.base.index];
      if (stage.name && this.contextFor(stage.name, platform ?? ctx.targetPlatform)) d.namedContext = stage.name;
      d.commands = stage.instructions.map((instr) => ({ instr, onbuild: false }));
      d.ignoreCache = this.isNoCache(stage.name ?? '');
      this.states.push(d);
      if (stage.name) this.byName.set(stage.name, d);
    }
    // Sources of `--from` (stages or external images); as BuildKit, every
    // `--from` that is not a stage, and every RUN mount, counts as a state.
    let unregistered = 0;
    for (const d of this.states) {
      for (const { instr } of d.commands) {
        for (const from of fromsOf(instr)) {
          if (from === undefined) {
            unregistered++;
            continue;
          }
          const src = this.stateFor(from, instr);
          if (src.index < 0) unregistered++;
          d.deps.add(src);
        }
      }
    }
    for (const d of this.states) {
      d.cmdTotal = (d.baseName.toLowerCase() !== 'scratch' && !d.base ? 1 : 0) + d.commands.filter(({ instr }) => countsAsCommand(instr)).length;
    }
    if (this.states.length + unregistered === 1) this.states[0].stageName = '';

    const target = this.states[graph.target];
    // Resolve base images of the reachable stages; ONBUILD triggers may add stages.
    for (;;) {
      const reachable = this.reachable(target);
      await Promise.all([...reachable].filter((d) => !d.resolved && (d.namedContext || !d.base)).map((d) => this.resolveBase(d)));
      let newDeps = false;
      for (const d of reachable) if (this.initOnbuild(d)) newDeps = true;
      if (!newDeps) break;
    }

    const reachable = this.reachable(target);
    for (const d of this.states) {
      if (!reachable.has(d) || d.dispatched) continue;
      await this.dispatchStage(d);
    }
    return target;
  }

  private newState(index: number, baseName: string, range: DispatchState['range'], platform?: Platform): DispatchState {
    return {
      index,
      stageName: '',
      baseName,
      deps: new Set(),
      state: scratch(),
      image: emptyImage(platform ?? this.ctx.targetPlatform),
      ...(platform ? { platform } : {}),
      buildArgs: [],
      commands: [],
      onbuildInit: false,
      resolved: false,
      dispatched: false,
      ignoreCache: false,
      cmdIndex: 0,
      cmdTotal: 0,
      cmdIsOnBuild: false,
      workdirSet: false,
      cmdSet: false,
      envEndsWithImageEnv: false,
      range,
    };
  }

  private isNoCache(name: string): boolean {
    const list = this.ctx.opts.noCache;
    if (list === undefined) return false;
    if (list.length === 0) return true;
    return list.some((n) => n.toLowerCase() === name.toLowerCase());
  }

  private at(instr: Pick<Instruction, 'range'>, problem: string, cause?: unknown): DockerfileParseError {
    const err = locatedError(problem, this.ctx.filename, this.ctx.lines, instr.range);
    if (cause !== undefined) (err as { cause?: unknown }).cause = cause;
    return err;
  }

  /** The stage (by name or index) or external image a `--from` names. */
  stateFor(from: string, instr?: Instruction): DispatchState {
    if (/^[+-]?\d+$/.test(from)) {
      const i = Number.parseInt(from, 10);
      const d = this.states[i];
      if (!d) throw instr ? this.at(instr, `invalid stage index ${i}`) : new BktError('INVALID_ARGUMENT', `invalid stage index ${i}`);
      return d;
    }
    const named = this.byName.get(from.toLowerCase());
    if (named) return named;
    let ext = this.externals.get(from);
    if (!ext) {
      ext = this.newState(-1, from, instr?.range ?? { startLine: 1, endLine: 1 });
      this.externals.set(from, ext);
    }
    return ext;
  }

  /** The states `target` is built from (base and `--from` sources, transitively), itself first, in depth-first order. */
  private reachable(target: DispatchState): Set<DispatchState> {
    const out = new Set<DispatchState>();
    // Iterative (an explicit stack), so chains of any length fit on the call stack.
    const pending = [target];
    while (pending.length > 0) {
      const d = pending.pop()!;
      if (out.has(d)) continue;
      out.add(d);
      if (d.namedContext) continue;
      const next = [...(d.base ? [d.base] : []), ...d.deps];
      for (let i = next.length - 1; i >= 0; i--) pending.push(next[i]);
    }
    return out;
  }

  /** The named context for a name (`context:NAME::os/arch` first, then `context:NAME`). */
  private contextFor(name: string, platform: Platform): string | undefined {
    const key = contextName(name);
    const contexts = this.ctx.opts.contexts;
    return contexts[`${key}::${formatPlatform(platform)}`] ?? contexts[key];
  }

  /** The base of a stage or an external image: a named context, scratch or a registry image (BuildKit's resolveBaseImage). */
  private async resolveBase(d: DispatchState): Promise<void> {
    d.resolved = true;
    const platform = d.platform ?? this.ctx.targetPlatform;
    const at = d.stage?.from ?? { range: d.range };
    try {
      if (d.namedContext) {
        const loaded = await this.loadContext(d.namedContext, this.contextFor(d.namedContext, platform)!, platform, d);
        d.state = loaded.state;
        if (loaded.image) {
          d.image = loaded.image;
          d.platform = imagePlatform(loaded.image) ?? platform;
        }
        d.dispatched = true;
        return;
      }
      const ctxValue = d.baseName.toLowerCase() === 'scratch' ? undefined : this.contextFor(d.baseName, platform);
      if (ctxValue !== undefined) {
        const loaded = await this.loadContext(d.baseName, ctxValue, platform, d);
        const stagePlatform = this.asksNoPlatform(d) && loaded.image ? normalizePlatform(imagePlatform(loaded.image) ?? platform) : platform;
        d.image = loaded.image ?? emptyImage(stagePlatform);
        d.state = loaded.state.platform(stagePlatform);
        d.platform = stagePlatform;
        if (d.index < 0) d.dispatched = true;
        return;
      }
      if (d.baseName.toLowerCase() === 'scratch') {
        d.state = scratch();
        d.image = emptyImage(platform);
        d.platform = platform;
        if (d.index < 0) d.dispatched = true;
        return;
      }
      await this.resolveImage(d, platform);
      if (d.index < 0) d.dispatched = true;
    } catch (err) {
      if (err instanceof DockerfileParseError) throw err;
      const located = this.at(at, `${d.baseName}: ${err instanceof Error ? err.message : String(err)}`, err);
      // A source policy's denial stays a denial, located at the FROM that asked for the image.
      if (isBktError(err, 'PERMISSION_DENIED')) throw new BktError('PERMISSION_DENIED', located.message, { ...err.details, ...located.details }, { cause: err });
      throw located;
    }
  }

  private async resolveImage(d: DispatchState, platform: Platform): Promise<void> {
    let ref: string;
    try {
      ref = normalizeReference(d.baseName);
    } catch (err) {
      throw new BktError('INVALID_ARGUMENT', `failed to parse stage name "${d.baseName}": ${(err as Error).message}`);
    }
    let pinned = ref;
    let img: DockerImage | undefined;
    const resolver = this.options.resolveImageConfig;
    if (resolver) {
      const res = await resolver(ref, { platform, resolveMode: this.ctx.opts.resolveMode });
      img = parseImageConfig(res.config, ref);
      if (this.asksNoPlatform(d)) platform = normalizePlatform(imagePlatform(img) ?? platform);
      else this.checkBasePlatform(d.baseName, img, platform, d);
      const named = stripDigest(res.ref ?? ref);
      if (res.digest) pinned = `${named}@${res.digest}`;
    }
    if (img) {
      delete img.created;
      this.envs.set(d.baseName, img.config.Env ?? []);
      d.image = img;
    } else {
      d.image = { ...emptyImage(platform), config: {} };
    }
    d.platform = platform;
    const isScratch = img !== undefined && img.rootfs.diff_ids.length === 0 && (img.history ?? []).every((h) => h.empty_layer);
    if (isScratch) {
      d.state = scratch();
      return;
    }
    d.state = image(pinned, {
      platform,
      ...(this.ctx.opts.resolveMode !== 'default' ? { resolveMode: this.ctx.opts.resolveMode } : {}),
      description: { 'com.docker.dockerfile.v1.command': d.stage?.from.original ?? d.baseName },
      customName: prefixCommand(d, `FROM ${pinned}`),
      sourceLocations: [location(this.ctx, d.range)],
    });
  }

  /**
   * True when neither the build (`platform`) nor the stage (`FROM --platform`)
   * names a platform: the stage is then its base image's (BuildKit's
   * autoDetectPlatform), so no base image is of another platform.
   */
  private asksNoPlatform(d: DispatchState): boolean {
    return !d.platform && !this.ctx.opts.targetPlatform;
  }

  /** Refuses (at the stage's FROM) or, when accepted, warns of a base image of another platform than `expected`. */
  private checkBasePlatform(name: string, img: DockerImage, expected: Platform, d: DispatchState): void {
    if (this.asksNoPlatform(d)) return;
    const at = d.stage?.from ?? { range: d.range };
    const problem = checkBasePlatform(this.ctx, name, img, expected, at.range);
    if (problem) throw this.at(at, problem);
  }

  /** A named context's state and, for images, its config (BuildKit's NamedContext.Load). */
  private async loadContext(name: string, value: string, platform: Platform, d: DispatchState): Promise<{ state: State; image?: DockerImage }> {
    const colon = value.indexOf(':');
    let scheme = colon < 0 ? '' : value.slice(0, colon);
    const rest = colon < 0 ? '' : value.slice(colon + 1);
    if (value.startsWith('git@')) scheme = 'git';
    const label = `[context ${name}]`;
    switch (scheme) {
      case 'docker-image': {
        const ref = rest.replace(/^\/\//, '');
        if (ref === 'scratch') return { state: scratch() };
        const normalized = normalizeReference(ref);
        const resolver = this.options.resolveImageConfig;
        if (!resolver) return { state: image(normalized, { platform, customName: `${label} ${ref}` }) };
        const res = await resolver(normalized, { platform, resolveMode: this.ctx.opts.resolveMode });
        const img = parseImageConfig(res.config, ref);
        this.checkBasePlatform(`${normalized} (context ${name})`, img, platform, d);
        delete img.created;
        const pinned = res.digest ? `${stripDigest(res.ref ?? normalized)}@${res.digest}` : normalized;
        this.envs.set(name, img.config.Env ?? []);
        return { state: image(pinned, { platform, customName: `${label} ${ref}` }).withImageConfig(res.config), image: img };
      }
      case 'oci-layout': {
        const ref = rest.replace(/^\/\//, '');
        const at = ref.indexOf('@');
        if (at < 0) throw new BktError('INVALID_ARGUMENT', `oci-layout reference "${ref}" has no digest`);
        // STORE[:TAG]@DIGEST (buildx sends the tag): the store id is the name alone, as BuildKit's named.Name().
        const store = splitReference(ref.slice(0, at)).name;
        const resolver = this.options.resolveImageConfig;
        if (!resolver) throw new BktError('UNIMPLEMENTED', `oci-layout context ${ref}: the build cannot resolve image configs`);
        const res = await resolver(`oci-layout://${ref}`, { platform, resolveMode: this.ctx.opts.resolveMode });
        const img = parseImageConfig(res.config, ref);
        this.checkBasePlatform(`oci-layout://${ref} (context ${name})`, img, platform, d);
        delete img.created;
        const st = ociLayout(ref, { storeId: store, customName: `${label} OCI load from client`, platform }).withImageConfig(res.config);
        return { state: st, image: img };
      }
      case 'input': {
        const loaded = inputContext(name, rest, this.options.inputs ?? {}, this.ctx.opts.inputMetadata[rest]);
        if (!loaded.config) return { state: loaded.state };
        const img = parseImageConfig(loaded.config, `input ${rest}`);
        delete img.created;
        this.envs.set(name, img.config.Env ?? []);
        return { state: loaded.state.withImageConfig(loaded.config), image: img };
      }
      case 'local': {
        const text = await this.options.readDockerignore?.(rest);
        const exclude = text ? parseDockerignore(text) : [];
        return {
          state: local(rest, {
            sharedKeyHint: `context:${name}`,
            customName: `${label} load from client`,
            ...(exclude.length > 0 ? { exclude } : {}),
          }),
        };
      }
      case 'git':
      case 'http':
      case 'https': {
        const g = parseGitRef(value);
        if (g.isGit && 'error' in g) throw new BktError('INVALID_ARGUMENT', g.error);
        if (g.isGit && 'ref' in g) {
          return {
            state: git(g.ref.remote, g.ref.ref, {
              customName: `[internal] load git source ${value}`,
              ...(g.ref.keepGitDir ? { keepGitDir: true } : {}),
              ...(g.ref.subdir ? { subdir: g.ref.subdir } : {}),
              ...(g.ref.checksum ? { checksum: g.ref.checksum } : {}),
            }),
          };
        }
        if (scheme === 'git') throw new BktError('INVALID_ARGUMENT', `invalid git context ${value}`);
        return { state: http(value, { filename: 'context', customName: `${label} ${value}` }) };
      }
      default:
        throw new BktError('INVALID_ARGUMENT', `unsupported context source ${scheme || value} for ${name}`, { attribute: `context:${name}` });
    }
  }

  /** Adds the ONBUILD triggers of the base to a stage's commands; true when they read new stages. */
  private initOnbuild(d: DispatchState): boolean {
    if (d.onbuildInit || d.index < 0 || d.namedContext) return false;
    d.onbuildInit = true;
    let triggers: string[];
    if (d.base) {
      triggers = d.base.commands.filter(({ instr }) => instr.kind === 'ONBUILD').map(({ instr }) => (instr as { expression: string }).expression);
    } else {
      triggers = [...(d.image.config.OnBuild ?? [])];
      d.image.config.OnBuild = null;
    }
    if (triggers.length === 0) return false;
    let newDeps = false;
    const commands: DispatchState['commands'] = [];
    for (const trigger of triggers) {
      let parsed: Instruction[];
      try {
        parsed = parseInstructions(trigger, { filename: this.ctx.filename });
      } catch (err) {
        throw this.at(d.stage!.from, `ONBUILD trigger ${JSON.stringify(trigger)}: ${(err as Error).message}`, err);
      }
      if (parsed.length !== 1) throw this.at(d.stage!.from, 'onbuild trigger should be a single expression');
      const instr = { ...parsed[0], range: { ...d.stage!.from.range } } as Instruction;
      commands.push({ instr, onbuild: true });
      for (const from of fromsOf(instr)) {
        if (from === undefined) continue;
        d.deps.add(this.stateFor(from, instr));
        newDeps = true;
      }
    }
    d.commands = [...commands, ...d.commands];
    d.cmdTotal += commands.length;
    return newDeps;
  }

  /** Initializes a stage from its base (BuildKit's dispatchStages preamble) and dispatches its commands. */
  private async dispatchStage(d: DispatchState): Promise<void> {
    const ctx = this.ctx;
    if (d.base) {
      const b = d.base;
      d.state = b.state;
      d.platform = b.platform;
      d.image = cloneImage(b.image);
      d.image.config.OnBuild = null;
      d.workdirSet = b.workdirSet;
      d.buildArgs = [...d.buildArgs, ...b.buildArgs];
    }
    d.dispatched = true;
    d.platform ??= ctx.targetPlatform;
    const env = d.image.config.Env ?? [];
    let envChanged = false;
    if (d.platform.os !== 'windows' && !env.some((e) => e === 'PATH' || e.startsWith('PATH='))) {
      d.image.config.Env = [...env, `PATH=${DEFAULT_PATH}`];
      envChanged = true;
    }
    // Re-adding the base image's Env to the base stage's environment (as BuildKit) changes nothing when it already ends with it:
    // skipped, so a chain of stages costs time linear in its length.
    if (envChanged || !d.base?.envEndsWithImageEnv) {
      for (const e of d.image.config.Env ?? []) d.state = d.state.env(envKey(e), envValue(e));
    }
    d.envEndsWithImageEnv = true;
    if (ctx.opts.hostname) d.state = d.state.hostname(ctx.opts.hostname);
    const from = d.stage!.from;
    try {
      if (d.image.config.WorkingDir) dispatchWorkdir(ctx, d, { path: d.image.config.WorkingDir, original: '', range: from.range }, false);
      if (d.image.config.User) dispatchUser(ctx, d, { user: d.image.config.User }, false);
    } catch (err) {
      throw this.at(from, (err as Error).message, err);
    }
    d.state = d.state.network(ctx.opts.networkMode);
    for (const { instr, onbuild } of d.commands) {
      if (this.pacer.due()) await this.pacer.pause();
      dispatchInstruction(ctx, d, instr, onbuild);
    }
  }
}

/** The stages/images an instruction reads: `COPY --from`, and one entry per RUN mount (undefined when it has no `from`). */
function fromsOf(instr: Instruction): (string | undefined)[] {
  if (instr.kind === 'COPY') return instr.from !== undefined ? [instr.from] : [];
  if (instr.kind === 'RUN') return instr.mounts.map((m) => (m.from ? m.from : undefined));
  return [];
}

/** Instructions that get a `[n/total]` number: those that make an op. */
function countsAsCommand(instr: Instruction): boolean {
  return instr.kind === 'ADD' || instr.kind === 'COPY' || instr.kind === 'RUN' || instr.kind === 'WORKDIR';
}

function stripDigest(ref: string): string {
  const at = ref.indexOf('@');
  return at < 0 ? ref : ref.slice(0, at);
}
