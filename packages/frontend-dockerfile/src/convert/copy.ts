import { BktError } from '@bkt/core';
import { copy, git, http, merge, mkfile, scratch, type CopyOptions, type FileAction, type OpOptions, type State } from '@bkt/llb';
import type { AddInstruction, CopyInstruction } from '../parser/instructions.js';
import { RULES } from '../parser/rules.js';
import { parseGitRef } from './git.js';
import { commitToHistory } from './image.js';
import { cleanPath, containsWildcards, destPath, normalizePath } from './paths.js';
import { type ConvertContext, type DispatchState, commandName, location, prefixCommand } from './state.js';

/**
 * COPY and ADD, as BuildKit's dispatchCopy: one FileOp with a copy action per
 * source (context or stage paths with wildcards, ADD's URLs and git
 * repositories, heredoc contents), `--chown` by name resolved in the
 * destination, `--chmod` octal or symbolic, `--exclude`, `--parents`, and
 * `--link` as a copy onto scratch merged over the stage.
 */
export function dispatchCopy(ctx: ConvertContext, d: DispatchState, c: CopyInstruction | AddInstruction, source: State, fromContext: boolean): void {
  const isAdd = c.kind === 'ADD';
  const dest = destPath(d.state.getDir(), c.dest);
  const common: CopyOptions = {
    ...(c.chown ? { chown: c.chown } : {}),
    ...(c.excludes.length > 0 ? { excludePatterns: [...c.excludes] } : {}),
  };
  if (c.chmod) common.mode = parseChmod(c.chmod);

  const checksum = isAdd ? (c as AddInstruction).checksum : undefined;
  if (checksum) {
    if (c.sources.length !== 1) throw new BktError('INVALID_ARGUMENT', "checksum can't be specified for multiple sources");
    if (!isHttpSource(c.sources[0]) && !isGitSource(c.sources[0])) throw new BktError('INVALID_ARGUMENT', 'checksum requires HTTP(S) or Git sources');
  }

  let history = isAdd ? 'ADD' : 'COPY';
  const parents = c.kind === 'COPY' && c.parents;
  if (parents) history += ' --parents';
  if (c.chown) history += ` --chown=${c.chown}`;
  if (c.chmod) history += ` --chmod=${c.chmod}`;

  const name = commandName(ctx, d, c.original);
  const pgName = prefixCommand(d, name);
  let action: FileAction | undefined;
  const add = (from: State, src: string, opts: CopyOptions): void => {
    action = action ? action.copy(from, src, dest, opts) : copy(from, src, dest, opts);
  };

  for (const src of c.sources) {
    history += ` ${src}`;
    const g = parseGitRef(src);
    if (g.isGit && 'error' in g) throw new BktError('INVALID_ARGUMENT', g.error);
    if (g.isGit && 'ref' in g && !g.ref.indistinguishableFromLocal) {
      if (!isAdd) throw new BktError('INVALID_ARGUMENT', "source can't be a git ref for COPY");
      const add_ = c as AddInstruction;
      let keepGitDir = add_.keepGitDir;
      if (keepGitDir !== undefined && g.ref.keepGitDir !== undefined && keepGitDir !== g.ref.keepGitDir) {
        throw new BktError('INVALID_ARGUMENT', 'inconsistent keep-git-dir configuration');
      }
      keepGitDir = g.ref.keepGitDir ?? keepGitDir;
      let sum = checksum ?? '';
      if (sum && g.ref.checksum && sum !== g.ref.checksum) throw new BktError('INVALID_ARGUMENT', `checksum mismatch "${sum}" != "${g.ref.checksum}"`);
      sum = g.ref.checksum || sum;
      const repo = git(g.ref.remote, g.ref.ref, {
        customName: pgName,
        sourceLocations: [location(ctx, c.range)],
        ...(keepGitDir ? { keepGitDir: true } : {}),
        ...(sum ? { checksum: sum } : {}),
        ...(g.ref.subdir ? { subdir: g.ref.subdir } : {}),
        ...(g.ref.submodules === false ? { skipSubmodules: true } : {}),
      });
      add(repo, '/', { ...common, createDestPath: true });
    } else if (isHttpSource(src)) {
      if (!isAdd) throw new BktError('INVALID_ARGUMENT', "source can't be a URL for COPY");
      let file = '__unnamed__';
      try {
        const base = new URL(src).pathname.split('/').filter(Boolean).pop();
        if (base) file = base;
      } catch {
        /* keep __unnamed__ */
      }
      if (checksum && !/^sha256:[a-f0-9]{64}$/.test(checksum)) throw new BktError('INVALID_ARGUMENT', `invalid checksum digest format: ${checksum}`);
      const st = http(src, {
        filename: file,
        customName: pgName,
        sourceLocations: [location(ctx, c.range)],
        description: { 'com.docker.dockerfile.v1.command': c.original },
        ...(checksum ? { checksum } : {}),
      });
      add(st, file, { ...common, createDestPath: true, attemptUnpackDockerCompatibility: (c as AddInstruction).unpack ?? false });
    } else {
      if (fromContext) checkIgnored(ctx, c, src);
      let from = src;
      let includePatterns: string[] | undefined;
      if (parents) {
        const pivot = src.indexOf('/./');
        let pattern = src;
        if (pivot >= 0) {
          from = src.slice(0, pivot);
          pattern = src.slice(pivot + 3);
        } else {
          from = '/';
        }
        includePatterns = [normalizePath('/', pattern, false).replace(/^\//, '')];
      }
      from = normalizePath('/', from, false);
      add(source, from, {
        ...common,
        followSymlink: true,
        dirCopyContents: true,
        ...(includePatterns ? { includePatterns } : {}),
        attemptUnpackDockerCompatibility: isAdd ? ((c as AddInstruction).unpack ?? true) : false,
        createDestPath: true,
        allowWildcard: true,
        allowEmptyWildcard: true,
      });
    }
  }

  for (const content of c.contents) {
    history += ` <<${content.path}`;
    const doc = scratch().file(mkfile(content.path, 0o644, content.data), { customName: '[internal] preparing inline document', platform: d.platform });
    add(doc, cleanPath(`/${content.path}`), { ...common, createDestPath: true });
  }
  history += ` ${c.dest}`;
  if (!action) throw new BktError('INVALID_ARGUMENT', `${c.keyword} has no source`);

  const fileOpts: OpOptions = {
    customName: pgName,
    sourceLocations: [location(ctx, c.range)],
    ...(d.ignoreCache ? { ignoreCache: true } : {}),
  };
  if (c.link && !c.chmod) {
    // Copied onto scratch, then merged: the layer does not depend on the stage's.
    const id = `${ctx.filename}:${c.range.startLine}:link${ctx.linkCount++}`;
    const copied = scratch().file(action, { ...fileOpts, platform: d.platform, progressGroup: { id, name: pgName, weak: true } });
    d.cmdIndex--;
    const mergeName = prefixCommand(d, `LINK ${name}`);
    d.state = d.state.withOutput(merge([d.state, copied], { ...fileOpts, customName: mergeName, progressGroup: { id, name: pgName } }).output);
  } else {
    d.state = d.state.file(action, fileOpts);
  }
  commitToHistory(d.image, history, true, true, ctx.epoch);
}

/** `--chmod`: octal up to 07777 as a mode, else a symbolic mode (`u+x,g-w`). */
function parseChmod(chmod: string): number | string {
  if (/^[0-7]+$/.test(chmod)) {
    const mode = Number.parseInt(chmod, 8);
    if (mode > 0o7777) throw new BktError('INVALID_ARGUMENT', `invalid chmod parameter: '${chmod}'. it should be octal string and between 0 and 07777`);
    return mode;
  }
  if (/^[0-9]+$/.test(chmod)) throw new BktError('INVALID_ARGUMENT', `invalid chmod parameter: '${chmod}'. it should be octal string and between 0 and 07777`);
  if (!/^([ugoa]*[-+=]([rwxXst]*|[ugo]))+(,([ugoa]*[-+=]([rwxXst]*|[ugo]))+)*$/.test(chmod)) {
    throw new BktError('INVALID_ARGUMENT', `invalid chmod parameter: '${chmod}'. it should be octal string and between 0 and 07777, or a symbolic mode such as u+x`);
  }
  return chmod;
}

function isGitSource(src: string): boolean {
  const g = parseGitRef(src);
  return g.isGit && 'ref' in g;
}

function isHttpSource(src: string): boolean {
  return (src.startsWith('http://') || src.startsWith('https://')) && !isGitSource(src);
}

/** The CopyIgnoredFile check: a source the `.dockerignore` leaves out of the context. */
function checkIgnored(ctx: ConvertContext, c: CopyInstruction | AddInstruction, src: string): void {
  if (!ctx.ignoreMatcher) return;
  const rel = cleanPath(`/${src}`).replace(/^\//, '');
  if (rel === '' || containsWildcards(rel)) return;
  if (ctx.ignoreMatcher.matches(rel)) {
    const cmd = c.kind === 'ADD' ? 'Add' : 'Copy';
    ctx.lint.forComments(c.comments).report(RULES.CopyIgnoredFile, c.range, `Attempting to ${cmd} file ${JSON.stringify(src)} that is excluded by .dockerignore`);
  }
}
