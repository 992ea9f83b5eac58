import { BktError } from '@bkt/core';
import { mkdir, mkfile, scratch, type Mount, type RunOptions, type State } from '@bkt/llb';
import { chompHeredocContent, parseHeredoc } from '../parser/ast.js';
import type { RunInstruction } from '../parser/instructions.js';
import type { RunMount } from '../parser/mounts.js';
import type { EnvGetter } from '../parser/shell.js';
import { commitToHistory } from './image.js';
import { checkRunEnvironment } from './limits.js';
import { baseName, cleanPath } from './paths.js';
import { type ConvertContext, type DispatchState, location, prefixCommand, processCmdEnv, shellLex, stateEnv, uppercaseCmd } from './state.js';

/**
 * RUN, as BuildKit's dispatchRun: the command through the image's shell (shell
 * form) or as written (exec form); heredocs as a script file or as the shell
 * input; every `--mount` type; `--network`, `--security`; the build's proxy
 * variables (which stay out of the history); a history entry listing the
 * stage's ARGs (`|N K=V … cmd`).
 */
export function dispatchRun(ctx: ConvertContext, d: DispatchState, c: RunInstruction): void {
  let args = [...c.command];
  let customName = c.original;
  const mounts: Mount[] = [];

  if (c.files.length > 0) {
    if (args.length !== 1 || !c.shellForm) throw new BktError('INVALID_ARGUMENT', `parsing produced an invalid run command: ${args.join(' ')}`);
    const heredoc = safeHeredoc(args[0]);
    if (heredoc) {
      const file = c.files[0];
      const data = file.chomp ? chompHeredocContent(file.data) : file.data;
      if (d.image.os !== 'windows' && data.startsWith('#!')) {
        // A script with a shebang: run it as a file.
        const doc = scratch()
          .dir('/')
          .file(mkfile(file.name, 0o755, data), { customName: '[internal] preparing inline document', platform: d.platform });
        mounts.push({ target: '/dev/pipes/', source: doc, selector: '/', readonly: true });
        args = [`/dev/pipes/${file.name}`.replace(/\/+/g, '/')];
      } else {
        // The body is the command line (so shells without heredocs work too).
        args = [data];
      }
      customName += ` (${summarizeHeredoc(file.data)})`;
    } else {
      // Several heredocs or a command around one: the shell reads them.
      let script = args[0];
      for (const file of c.files) script += `\n${file.data}${file.name}`;
      args = [script];
    }
  }
  if (c.shellForm) args = withShell(d, args);

  checkRunEnvironment(d.state.meta.env);
  const env = stateEnv(d);
  const { mounts: runMounts, secretEnv } = runMountsFor(ctx, d, c.mounts);
  mounts.push(...runMounts);
  if (ctx.opts.shmSize > 0) mounts.push({ type: 'tmpfs', target: '/dev/shm', size: ctx.opts.shmSize });

  const rawLex = shellLex(ctx, { rawQuotes: true, skipUnsetEnv: true });
  const name = prefixCommand(d, uppercaseCmd(processCmdEnv(rawLex, customName, withSecretEnvMask(c.mounts, env))));

  const opts: RunOptions = {
    args,
    customName: name,
    description: { 'com.docker.dockerfile.v1.command': c.original },
    sourceLocations: [location(ctx, c.range)],
    mounts,
    ...(secretEnv.length > 0 ? { secretEnv } : {}),
    ...(d.ignoreCache ? { ignoreCache: true } : {}),
    ...(ctx.proxyEnv ? { proxyEnv: ctx.proxyEnv } : {}),
    ...(c.network !== 'default' ? { network: c.network } : {}),
    ...(c.security === 'insecure' ? { security: 'insecure' as const } : {}),
    ...(ctx.opts.ulimits.length > 0 ? { ulimits: ctx.opts.ulimits } : {}),
    ...(ctx.opts.extraHosts.length > 0 ? { extraHosts: ctx.opts.extraHosts } : {}),
    ...(ctx.opts.cgroupParent ? { cgroupParent: ctx.opts.cgroupParent } : {}),
  };
  d.state = d.state.run(opts).root();
  commitToHistory(d.image, `RUN ${runCommandString(args, d.buildArgs, env)}`, true, true, ctx.epoch);
}

/** The image's SHELL (default `/bin/sh -c`) followed by the command line. */
export function withShell(d: DispatchState, args: string[]): string[] {
  const shell = d.image.config.Shell && d.image.config.Shell.length > 0 ? [...d.image.config.Shell] : d.image.os === 'windows' ? ['cmd', '/S', '/C'] : ['/bin/sh', '-c'];
  return [...shell, args.join(' ')];
}

/** The history text of a RUN: the stage's ARGs with their values, then the command (BuildKit's runCommandString). */
function runCommandString(args: string[], buildArgs: DispatchState['buildArgs'], env: EnvGetter): string {
  const entries: string[] = [];
  const index = new Map<string, number>();
  for (const arg of buildArgs) {
    const v = env.get(arg.key) ?? arg.value ?? '';
    const i = index.get(arg.key);
    if (i !== undefined) entries[i] = `${arg.key}=${v}`;
    else {
      index.set(arg.key, entries.length);
      entries.push(`${arg.key}=${v}`);
    }
  }
  const prefix = entries.length > 0 ? [`|${entries.length}`, ...entries] : [];
  return [...prefix, ...args].join(' ');
}

function safeHeredoc(word: string) {
  try {
    return parseHeredoc(word);
  } catch {
    return undefined;
  }
}

function summarizeHeredoc(doc: string): string {
  const lines = doc.trim().replace(/\r\n/g, '\n').split('\n');
  return lines.length > 1 ? `${lines[0]}...` : lines[0];
}

/** Secrets exposed as variables show as `****` in vertex names. */
function withSecretEnvMask(mounts: RunMount[], env: EnvGetter): EnvGetter {
  const masked = new Map<string, string>();
  for (const m of mounts) if (m.type === 'secret' && m.env !== undefined) masked.set(m.env, '****');
  if (masked.size === 0) return env;
  return {
    get: (k) => masked.get(k) ?? env.get(k),
    keys: () => [...env.keys().filter((k) => !masked.has(k)), ...masked.keys()],
  };
}

/** The LLB mounts of `RUN --mount=…` (BuildKit's dispatchRunMounts, dispatchSecret, dispatchSSH). */
function runMountsFor(ctx: ConvertContext, d: DispatchState, runMounts: RunMount[]): { mounts: Mount[]; secretEnv: NonNullable<RunOptions['secretEnv']> } {
  const mounts: Mount[] = [];
  const secretEnv: NonNullable<RunOptions['secretEnv']> = [];
  for (const m of runMounts) {
    if (m.type === 'secret') {
      let id = m.id ?? '';
      if (m.source) id = m.source;
      if (id === '') {
        if (!m.target) throw new BktError('INVALID_ARGUMENT', 'one of source, target required');
        id = baseName(m.target);
      }
      let target = m.target ? rootedTarget(m.target) : undefined;
      if (m.env === undefined) target ??= `/run/secrets/${baseName(id)}`;
      const fileOpts = m.uid !== undefined || m.gid !== undefined || m.mode !== undefined ? { uid: m.uid ?? 0, gid: m.gid ?? 0, mode: m.mode ?? 0o400 } : {};
      if (target) mounts.push({ type: 'secret', target, id, optional: !m.required, ...fileOpts });
      if (m.env !== undefined) secretEnv.push({ name: m.env, id, optional: !m.required });
      continue;
    }
    if (m.type === 'ssh') {
      if (m.source) throw new BktError('INVALID_ARGUMENT', 'ssh does not support source');
      const fileOpts = m.uid !== undefined || m.gid !== undefined || m.mode !== undefined ? { uid: m.uid ?? 0, gid: m.gid ?? 0, mode: m.mode ?? 0o600 } : {};
      mounts.push({ type: 'ssh', ...(m.target ? { target: rootedTarget(m.target) } : {}), id: m.id ?? '', optional: !m.required, ...fileOpts });
      continue;
    }

    const target = absoluteTarget(d, m.target ?? '');
    if (target === '/') throw new BktError('INVALID_ARGUMENT', `invalid mount target "${target}"`);
    if (m.type === 'tmpfs') {
      mounts.push({ type: 'tmpfs', target, ...(m.sizeLimit ? { size: m.sizeLimit } : {}) });
      continue;
    }

    let source: State;
    if (m.from) {
      const src = ctx.stateFor(m.from);
      if (!src.dispatched) {
        throw new BktError('INVALID_ARGUMENT', `cannot mount from stage "${m.from}" to "${m.target}", stage needs to be defined before current command`);
      }
      source = src.state;
    } else {
      source = m.type === 'cache' ? scratch() : ctx.buildContext;
    }
    let selector = '';
    const src = cleanPath(`/${m.source ?? ''}`);
    if (src !== '/') selector = src;
    else if (m.uid !== undefined || m.gid !== undefined || m.mode !== undefined) {
      // A new cache directory owned and moded as asked.
      source = source.file(mkdir('/cache', m.mode ?? 0o755, { chown: { user: m.uid ?? 0, group: m.gid ?? 0 } }), {
        customName: '[internal] setting cache mount permissions',
      });
      selector = '/cache';
    }

    if (m.type === 'cache') {
      const id = `${ctx.opts.cacheNamespace}/${m.id || cleanPath(m.target ?? '')}`;
      mounts.push({
        type: 'cache',
        target,
        id,
        sharing: m.sharing ?? 'shared',
        ...(source.output ? { source } : {}),
        ...(selector ? { selector } : {}),
        ...(m.readOnly ? { readonly: true } : {}),
      });
      continue;
    }
    // bind: read-only by default; rw mounts keep their changes out of the result.
    mounts.push({
      target,
      source,
      ...(selector ? { selector } : {}),
      ...(m.readOnly ? { readonly: true } : { noOutput: true }),
    });
  }
  return { mounts, secretEnv };
}

/** A mount point: as written when absolute, else under the working directory. */
function absoluteTarget(d: DispatchState, target: string): string {
  if (target.startsWith('/')) return target;
  return cleanPath(`/${d.state.getDir()}/${target}`);
}

/**
 * A secret or ssh mount point: as written when absolute, else under `/`.
 * BuildKit's frontend passes these targets on as written and runc places a
 * relative destination under the container's root, not the workdir.
 */
function rootedTarget(target: string): string {
  return target.startsWith('/') ? target : cleanPath(`/${target}`);
}
