import { BktError } from '@bkt/core';
import { mkdir } from '@bkt/llb';
import type {
  ArgInstruction, CmdInstruction, EntrypointInstruction, EnvInstruction, ExposeInstruction, HealthcheckInstruction,
  Instruction, LabelInstruction, StopSignalInstruction, UserInstruction, VolumeInstruction, WorkdirInstruction,
} from '../parser/instructions.js';
import { DockerfileParseError, locatedError } from '../parser/errors.js';
import { expandInstruction } from '../parser/expand.js';
import { goQuote } from '../parser/shell.js';
import { dispatchCopy } from './copy.js';
import { commitToHistory, formatGoDuration, setImageEnv } from './image.js';
import { normalizePath } from './paths.js';
import { dispatchRun, withShell } from './run.js';
import { type ConvertContext, type DispatchState, commandName, location, prefixCommand, shellLex, stateEnv } from './state.js';

/** Runs one instruction of a stage; errors carry the instruction's file:line. */
export function dispatchInstruction(ctx: ConvertContext, d: DispatchState, instr: Instruction, onbuild: boolean): void {
  d.cmdIsOnBuild = onbuild;
  try {
    const c = instr.kind === 'ARG' ? instr : expandInstruction(instr, stateEnv(d), { escapeToken: ctx.escapeToken, filename: ctx.filename, budget: ctx.expansionBudget }).instruction;
    dispatchExpanded(ctx, d, c);
  } catch (err) {
    if (err instanceof DockerfileParseError) throw err;
    const problem = err instanceof Error ? err.message : String(err);
    throw locatedError(problem, ctx.filename, ctx.lines, instr.range);
  }
}

function dispatchExpanded(ctx: ConvertContext, d: DispatchState, c: Instruction): void {
  const img = d.image;
  switch (c.kind) {
    case 'ENV': {
      let msg = 'ENV';
      for (const kv of c.env) {
        msg += ` ${kv.key}=${kv.value}`;
        d.state = d.state.env(kv.key, kv.value);
        if (!setImageEnv(img, kv.key, kv.value)) d.envEndsWithImageEnv = false;
      }
      return commitToHistory(img, msg, false, false, ctx.epoch);
    }
    case 'RUN':
      return dispatchRun(ctx, d, c);
    case 'WORKDIR':
      return dispatchWorkdir(ctx, d, c, true);
    case 'COPY': {
      let source = ctx.buildContext;
      let fromContext = true;
      if (c.from !== undefined) {
        const src = ctx.stateFor(c.from);
        if (!src.dispatched) {
          throw new BktError('INVALID_ARGUMENT', `cannot copy from stage "${c.from}", it needs to be defined before current stage "${d.stageName}"`);
        }
        source = src.state;
        fromContext = false;
      }
      return dispatchCopy(ctx, d, c, source, fromContext);
    }
    case 'ADD':
      return dispatchCopy(ctx, d, c, ctx.buildContext, true);
    case 'LABEL': {
      let msg = 'LABEL';
      img.config.Labels ??= {};
      for (const kv of c.labels) {
        img.config.Labels[kv.key] = kv.value;
        msg += ` ${kv.key}=${kv.value}`;
      }
      return commitToHistory(img, msg, false, false, ctx.epoch);
    }
    case 'MAINTAINER':
      img.author = c.maintainer;
      return commitToHistory(img, `MAINTAINER ${c.maintainer}`, false, false, ctx.epoch);
    case 'ONBUILD':
      img.config.OnBuild = [...(img.config.OnBuild ?? []), c.expression];
      return;
    case 'CMD':
      return dispatchCmd(ctx, d, c);
    case 'ENTRYPOINT':
      return dispatchEntrypoint(ctx, d, c);
    case 'HEALTHCHECK':
      return dispatchHealthcheck(ctx, d, c);
    case 'EXPOSE':
      return dispatchExpose(ctx, d, c);
    case 'USER':
      return dispatchUser(ctx, d, c, true);
    case 'VOLUME':
      return dispatchVolume(ctx, d, c);
    case 'STOPSIGNAL':
      return dispatchStopSignal(ctx, d, c);
    case 'SHELL':
      img.config.Shell = [...c.shell];
      return commitToHistory(img, `SHELL [${c.shell.join(' ')}]`, false, false, ctx.epoch);
    case 'ARG':
      return dispatchArg(ctx, d, c);
    case 'FROM':
      throw new BktError('INVALID_ARGUMENT', 'FROM is not allowed here');
  }
}

/**
 * WORKDIR: the state's and the config's working directory; with `commit`, a
 * mkdir of it (owned by the current USER, as BuildKit) and a history entry.
 */
export function dispatchWorkdir(ctx: ConvertContext, d: DispatchState, c: Pick<WorkdirInstruction, 'path' | 'original' | 'range'>, commit: boolean): void {
  if (c.path === '') throw new BktError('INVALID_ARGUMENT', 'normalizing workdir: cannot normalize nothing');
  const wd = normalizePath(d.image.config.WorkingDir ?? '', c.path, false);
  d.image.config.WorkingDir = wd;
  d.state = d.state.dir(wd);
  if (!commit) return;
  d.workdirSet = true;
  let withLayer = false;
  if (wd !== '/') {
    const user = d.image.config.User;
    d.state = d.state.file(
      mkdir(wd, 0o755, { makeParents: true, ...(user ? { chown: user } : {}), ...(ctx.epoch ? { createdTime: ctx.epoch } : {}) }),
      {
        customName: prefixCommand(d, commandName(ctx, d, c.original)),
        sourceLocations: [location(ctx, c.range)],
        ...(d.platform ? { platform: d.platform } : {}),
      },
    );
    withLayer = true;
  }
  commitToHistory(d.image, `WORKDIR ${wd}`, withLayer, false, ctx.epoch);
}

export function dispatchUser(ctx: ConvertContext, d: DispatchState, c: Pick<UserInstruction, 'user'>, commit: boolean): void {
  d.state = d.state.user(c.user);
  d.image.config.User = c.user;
  if (commit) commitToHistory(d.image, `USER ${c.user}`, false, false, ctx.epoch);
}

function goQuoteList(list: string[]): string {
  return `[${list.map(goQuote).join(' ')}]`;
}

function dispatchCmd(ctx: ConvertContext, d: DispatchState, c: CmdInstruction): void {
  const args = c.shellForm ? withShell(d, c.command) : [...c.command];
  d.image.config.Cmd = args;
  d.image.config.ArgsEscaped = true;
  d.cmdSet = true;
  commitToHistory(d.image, `CMD ${goQuoteList(args)}`, false, false, ctx.epoch);
}

function dispatchEntrypoint(ctx: ConvertContext, d: DispatchState, c: EntrypointInstruction): void {
  const args = c.shellForm ? withShell(d, c.command) : [...c.command];
  d.image.config.Entrypoint = args;
  // As docker: an ENTRYPOINT resets the CMD inherited from the base.
  if (!d.cmdSet) d.image.config.Cmd = null;
  commitToHistory(d.image, `ENTRYPOINT ${goQuoteList(args)}`, false, false, ctx.epoch);
}

function dispatchHealthcheck(ctx: ConvertContext, d: DispatchState, c: HealthcheckInstruction): void {
  const h = c.health;
  d.image.config.Healthcheck = {
    Test: [...h.test],
    Interval: h.interval,
    Timeout: h.timeout,
    StartPeriod: h.startPeriod,
    StartInterval: h.startInterval,
    Retries: h.retries,
  };
  const text =
    `{Test:[${h.test.join(' ')}] Interval:${formatGoDuration(h.interval)} Timeout:${formatGoDuration(h.timeout)} ` +
    `StartPeriod:${formatGoDuration(h.startPeriod)} StartInterval:${formatGoDuration(h.startInterval)} Retries:${h.retries}}`;
  commitToHistory(d.image, `HEALTHCHECK ${text}`, false, false, ctx.epoch);
}

function dispatchVolume(ctx: ConvertContext, d: DispatchState, c: VolumeInstruction): void {
  d.image.config.Volumes ??= {};
  for (const v of c.volumes) {
    if (v === '') throw new BktError('INVALID_ARGUMENT', 'VOLUME specified can not be an empty string');
    d.image.config.Volumes[v] = {};
  }
  commitToHistory(d.image, `VOLUME [${c.volumes.join(' ')}]`, false, false, ctx.epoch);
}

const SIGNALS = new Set([
  'ABRT', 'ALRM', 'BUS', 'CHLD', 'CLD', 'CONT', 'FPE', 'HUP', 'ILL', 'INT', 'IO', 'IOT', 'KILL', 'PIPE', 'POLL', 'PROF', 'PWR',
  'QUIT', 'SEGV', 'STKFLT', 'STOP', 'SYS', 'TERM', 'TRAP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'USR1', 'USR2', 'VTALRM', 'WINCH', 'XCPU', 'XFSZ',
  ...Array.from({ length: 31 }, (_, i) => `RTMIN+${i + 1}`),
  ...Array.from({ length: 30 }, (_, i) => `RTMAX-${i + 1}`),
  'RTMIN', 'RTMAX',
]);

function dispatchStopSignal(ctx: ConvertContext, d: DispatchState, c: StopSignalInstruction): void {
  const s = c.signal;
  const valid = /^\d+$/.test(s) ? Number(s) > 0 : SIGNALS.has(s.toUpperCase().replace(/^SIG/, ''));
  if (!valid) throw new BktError('INVALID_ARGUMENT', `Invalid signal: ${s}`);
  d.image.config.StopSignal = s;
  commitToHistory(d.image, `STOPSIGNAL ${s}`, false, false, ctx.epoch);
}

/** EXPOSE: `[ip:]host:port[/proto]` and ranges, each as `port/proto` in ExposedPorts (BuildKit's parsePorts). */
function dispatchExpose(ctx: ConvertContext, d: DispatchState, c: ExposeInstruction): void {
  const ports: string[] = [];
  for (const raw of c.ports) ports.push(...parsePort(raw));
  d.image.config.ExposedPorts ??= {};
  for (const p of ports) d.image.config.ExposedPorts[p] = {};
  commitToHistory(d.image, `EXPOSE [${ports.join(' ')}]`, false, false, ctx.epoch);
}

function parsePort(raw: string): string[] {
  const parts = raw.split(':');
  const containerPart = parts[parts.length - 1];
  const hostPort = parts.length >= 2 ? parts[parts.length - 2] : '';
  const slash = containerPart.indexOf('/');
  const port = slash < 0 ? containerPart : containerPart.slice(0, slash);
  let proto = slash < 0 ? '' : containerPart.slice(slash + 1);
  if (port === '') throw new BktError('INVALID_ARGUMENT', `invalid port: ${JSON.stringify(raw)}: no port specified`);
  if (proto === '') proto = 'tcp';
  else if (!['tcp', 'udp', 'sctp'].includes(proto.toLowerCase())) throw new BktError('INVALID_ARGUMENT', `invalid port: ${JSON.stringify(raw)}: invalid proto: ${proto}`);
  const [start, end] = portRange(port, 'containerPort');
  if (hostPort !== '') {
    const [hs, he] = portRange(hostPort, 'hostPort');
    if (end - start !== he - hs && end !== start) {
      throw new BktError('INVALID_ARGUMENT', `invalid ranges specified for container and host Ports: ${port} and ${hostPort}`);
    }
  }
  const out: string[] = [];
  for (let p = start; p <= end; p++) out.push(`${p}/${proto.toLowerCase()}`);
  return out;
}

function portRange(spec: string, what: string): [number, number] {
  const dash = spec.indexOf('-');
  const a = dash < 0 ? spec : spec.slice(0, dash);
  const b = dash < 0 ? a : spec.slice(dash + 1);
  const num = (s: string): number => {
    if (!/^\d+$/.test(s) || Number(s) > 65535) throw new BktError('INVALID_ARGUMENT', `invalid ${what}: ${spec}`);
    return Number(s);
  };
  const start = num(a);
  const end = num(b);
  if (end < start) throw new BktError('INVALID_ARGUMENT', `invalid ${what}: ${spec}`);
  return [start, end];
}

/**
 * ARG: the value is the build arg, else the default (expanded), else the
 * global ARG of the same name; it becomes a variable of later RUNs (not of
 * the image) and is listed in their history.
 */
function dispatchArg(ctx: ConvertContext, d: DispatchState, c: ArgInstruction): void {
  const parts: string[] = [];
  const lex = shellLex(ctx);
  for (const def of c.args) {
    const hasBuildArg = Object.hasOwn(ctx.opts.buildArgs, def.key);
    let value = def.value;
    if (value === undefined && !hasBuildArg && ctx.globalArgs.has(def.key)) value = ctx.globalArgs.get(def.key);
    else if (hasBuildArg) value = ctx.opts.buildArgs[def.key];
    else if (value !== undefined) value = lex.processWord(value, stateEnv(d)).result;
    if (value !== undefined && def.key !== 'BUILDKIT_SBOM_SCAN_CONTEXT' && def.key !== 'BUILDKIT_SBOM_SCAN_STAGE') {
      d.state = d.state.env(def.key, value);
      d.envEndsWithImageEnv = false;
    }
    d.buildArgs.push({ key: def.key, ...(value !== undefined ? { value } : {}) });
    parts.push(value !== undefined ? `${def.key}=${value}` : def.key);
  }
  commitToHistory(d.image, `ARG ${parts.join(' ')}`, false, false, ctx.epoch);
}
