import { isBktError } from '@bkt/core';
import { describe, expect, it } from 'vitest';
import { parseDockerfile, parseInstructions } from './dockerfile.js';
import { DockerfileParseError } from './errors.js';
import type { Instruction } from './instructions.js';

/** The instructions of a one-stage Dockerfile (after its FROM). */
function stage(body: string): Instruction[] {
  return parseDockerfile(`FROM busybox\n${body}`, { skipChecks: true }).stages[0].instructions;
}
function one<K extends Instruction['kind']>(kind: K, body: string): Extract<Instruction, { kind: K }> {
  const [i] = stage(body);
  expect(i.kind).toBe(kind);
  return i as Extract<Instruction, { kind: K }>;
}
function parseError(text: string): DockerfileParseError {
  try {
    parseDockerfile(text, { skipChecks: true });
  } catch (err) {
    expect(err).toBeInstanceOf(DockerfileParseError);
    return err as DockerfileParseError;
  }
  throw new Error(`expected a parse error for:\n${text}`);
}

describe('stages and meta args', () => {
  it('groups instructions into stages with names, platforms and meta args', () => {
    const df = parseDockerfile(
      ['# syntax=docker/dockerfile:1', 'ARG BASE=alpine', 'ARG V', 'FROM --platform=$BUILDPLATFORM ${BASE} AS Build', 'RUN make', 'FROM scratch', 'COPY --from=build /out /'].join('\n'),
      { skipChecks: true },
    );
    expect(df.syntax).toBe('docker/dockerfile:1');
    expect(df.metaArgs.flatMap((a) => a.args)).toEqual([{ key: 'BASE', value: 'alpine' }, { key: 'V' }]);
    expect(df.stages).toHaveLength(2);
    expect(df.stages[0]).toMatchObject({ index: 0, name: 'build', baseName: '${BASE}', platform: '$BUILDPLATFORM', range: { startLine: 4, endLine: 4 } });
    expect(df.stages[0].from).toMatchObject({ asKeyword: 'AS', stageNameAsWritten: 'Build' });
    expect(df.stages[0].instructions.map((i) => i.kind)).toEqual(['RUN']);
    expect(df.stages[1]).toMatchObject({ index: 1, baseName: 'scratch' });
    expect(df.stages[1].name).toBeUndefined();
  });

  it('refuses instructions before FROM, no stage at all, and bad FROM forms', () => {
    expect(parseError('RUN x\nFROM a').problem).toBe('no build stage in current context');
    expect(parseError('ARG A\n').problem).toBe('dockerfile contains no stages to build');
    expect(parseError('FROM a b').problem).toBe('FROM requires either one or three arguments');
    expect(parseError('FROM a AS 1x').problem).toContain('invalid name for build stage: "1x"');
    expect(parseError('FROM a AS b c').problem).toBe('FROM requires either one or three arguments');
    expect(parseError('FROM --plaform=x a').problem).toBe('unknown flag: --plaform (did you mean platform?)');
  });

  it('takes doc comments for stages and args', () => {
    const df = parseDockerfile('# foo sets foo\nARG foo=bar\n\n# base defines first stage\nFROM busybox AS base\n# bar defines bar\n# baz is something else\nARG bar baz=123\n', { skipChecks: true });
    expect(df.stages[0].from.docComment).toBe('defines first stage');
    expect(df.metaArgs[0].args[0].docComment).toBe('sets foo');
    const arg = df.stages[0].instructions[0];
    expect(arg.kind === 'ARG' && arg.args).toEqual([
      { key: 'bar', docComment: 'defines bar' },
      { key: 'baz', value: '123', docComment: 'is something else' },
    ]);
  });
});

describe('every instruction', () => {
  it('ENV: pairs and the legacy form', () => {
    expect(one('ENV', 'ENV A=1 B="two words" C=three\\ words').env).toEqual([
      { key: 'A', value: '1', legacy: false },
      { key: 'B', value: '"two words"', legacy: false },
      { key: 'C', value: 'three\\ words', legacy: false },
    ]);
    expect(one('ENV', 'ENV PATH /usr/bin:/bin  more').env).toEqual([{ key: 'PATH', value: '/usr/bin:/bin  more', legacy: true }]);
    expect(parseError('FROM a\nENV').problem).toBe('ENV requires at least one argument');
    expect(parseError('FROM a\nENV =x').problem).toBe('ENV names can not be blank');
  });

  it('ARG: several, with and without defaults', () => {
    expect(one('ARG', 'ARG A B=2 C= "D=4 5"').args).toEqual([{ key: 'A' }, { key: 'B', value: '2' }, { key: 'C', value: '' }, { key: '"D', value: '4 5"' }]);
    expect(parseError('FROM a\nARG =x').problem).toBe('ARG names can not be blank');
    expect(parseError('FROM a\nARG').problem).toBe('ARG requires at least one argument');
  });

  it('LABEL: pairs and legacy', () => {
    expect(one('LABEL', 'LABEL a=b "c d"=e').labels).toEqual([
      { key: 'a', value: 'b', legacy: false },
      { key: '"c d"', value: 'e', legacy: false },
    ]);
    expect(one('LABEL', 'LABEL maintainer Me <me@x>').labels).toEqual([{ key: 'maintainer', value: 'Me <me@x>', legacy: true }]);
  });

  it('RUN: shell and exec form, network, security, heredocs', () => {
    expect(one('RUN', 'RUN echo  hi && ls')).toMatchObject({ command: ['echo  hi && ls'], shellForm: true, network: 'default', security: 'sandbox', mounts: [], flagsUsed: [] });
    expect(one('RUN', 'RUN ["ls", "-l"]')).toMatchObject({ command: ['ls', '-l'], shellForm: false });
    expect(one('RUN', 'RUN --network=none --security=insecure true')).toMatchObject({ network: 'none', security: 'insecure' });
    expect(parseError('FROM a\nRUN --network=bridge true').problem).toBe('invalid network mode "bridge"');
    expect(parseError('FROM a\nRUN --security=x true').problem).toBe('security "x" is not valid');
    expect(parseError('FROM a\nRUN --networks=none true').problem).toBe('unknown flag: --networks (did you mean network?)');
    const run = one('RUN', 'RUN <<EOF\necho hi\nEOF');
    expect(run).toMatchObject({ command: ['<<EOF'], shellForm: true, files: [{ name: 'EOF', data: 'echo hi\n', chomp: false, expand: true, fileDescriptor: 0 }] });
    expect(one('RUN', "RUN <<-'EOF' | python\n\tprint(1)\nEOF")).toMatchObject({ command: ["<<-'EOF' | python"], files: [{ name: 'EOF', data: '\tprint(1)\n', chomp: true, expand: false }] });
  });

  it('RUN --mount: every type with its options', () => {
    const run = one(
      'RUN',
      [
        'RUN --mount=type=bind,from=builder,source=/src,target=/dst,rw \\',
        '    --mount=type=cache,id=go,target=/root/.cache,sharing=locked,mode=0700,uid=1000,gid=1000 \\',
        '    --mount=type=tmpfs,dst=/tmp,size=64m \\',
        '    --mount=type=secret,id=tok,env=TOKEN,required \\',
        '    --mount=type=ssh,id=default,destination=/ssh,required=false \\',
        '    --mount=target=/plain \\',
        '    make',
      ].join('\n'),
    );
    expect(run.mounts).toEqual([
      { type: 'bind', from: 'builder', source: '/src', target: '/dst', readOnly: false, required: false },
      { type: 'cache', id: 'go', target: '/root/.cache', sharing: 'locked', mode: 0o700, uid: 1000, gid: 1000, readOnly: false, required: false },
      { type: 'tmpfs', target: '/tmp', sizeLimit: 64 * 1024 * 1024, readOnly: false, required: false },
      { type: 'secret', id: 'tok', env: 'TOKEN', required: true, readOnly: true },
      { type: 'ssh', id: 'default', target: '/ssh', required: false, readOnly: true },
      { type: 'bind', target: '/plain', readOnly: true, required: false },
    ]);
    expect(run.mountSpecs).toHaveLength(6);
    expect(run.command).toEqual(['make']);
    expect(run.range).toEqual({ startLine: 2, endLine: 8 });
  });

  it('RUN --mount: bad options are errors naming the option', () => {
    const cases: Array<[string, string]> = [
      ['type=volume', 'unsupported mount type "volume"'],
      ['type=cahce,target=/x', 'unsupported mount type "cahce" (did you mean cache?)'],
      ['type=cache,target=/x,sharing=all', 'unsupported sharing value "all"'],
      ['type=bind,target=/x,size=1g', "unexpected key 'size' for mount type 'bind'"],
      ['type=tmpfs,target=/x,size=lots', 'invalid value for size: lots'],
      ['type=bind,target=/x,mode=0755', 'mode not allowed for "bind" type mounts'],
      ['type=tmpfs,target=/x,uid=1', 'uid not allowed for "tmpfs" type mounts'],
      ['type=cache,target=/x,mode=9', 'invalid value 9 for mode'],
      ['type=cache,target=/x,uid=-1', 'invalid value -1 for uid'],
      ['type=bind,target=/x,required', "unexpected key 'required' for mount type 'bind'"],
      ['type=secret,id=a,from=b', 'secret mount should not have a from'],
      ['type=secret,id=a,sharing=shared', 'secret mount should not define sharing'],
      ['type=secret', 'invalid secret mount. one of source, target required'],
      ['type=secret,source=a,id=b', "both source and id can't be set"],
      ['type=bind,target=/x,sharing=shared', 'invalid cache sharing set for bind mount'],
      ['type=bind,target=/x,ro=maybe', 'invalid value for ro: maybe'],
      ['type=bind,target', "invalid field 'target' must be a key=value pair"],
      ['type=bind,targte=/x', "unexpected key 'targte' in 'targte=/x' (did you mean target?)"],
      ['type=bind,from=$STAGE,target=/x', "'from' doesn't support variable expansion, define alias stage instead"],
      [`'type=bind,tar"get=/x'`, 'failed to parse csv mounts: parse error on line 1, column 14: bare " in non-quoted-field'],
    ];
    for (const [spec, problem] of cases) {
      const err = parseError(`FROM a\nRUN --mount=${spec} true`);
      expect(err.problem, spec).toContain(problem);
      expect(err.details.line).toBe(2);
    }
    expect(parseError('FROM a\nRUN --mount= true').problem).toContain('failed to parse csv mounts: EOF');
  });

  it('RUN --mount with variables is kept for expansion', () => {
    const run = one('RUN', 'RUN --mount=type=cache,target=$HOME/.cache,uid=$UID true');
    expect(run.mounts[0]).toMatchObject({ type: 'cache', target: '$HOME/.cache' });
    expect(run.mounts[0].uid).toBeUndefined();
  });

  it('CMD and ENTRYPOINT', () => {
    expect(one('CMD', 'CMD ["a", "b"]')).toMatchObject({ command: ['a', 'b'], shellForm: false });
    expect(one('CMD', 'CMD echo $HOME')).toMatchObject({ command: ['echo $HOME'], shellForm: true });
    expect(one('ENTRYPOINT', 'ENTRYPOINT []')).toMatchObject({ command: [], shellForm: false });
    expect(one('ENTRYPOINT', 'ENTRYPOINT ["a" "b"]')).toMatchObject({ command: ['["a" "b"]'], shellForm: true });
  });

  it('COPY: flags, sources, heredoc sources', () => {
    const c = one('COPY', 'COPY --from=build --chown=1:2 --chmod=644 --link --parents --exclude=*.md --exclude=tmp a b/ /dst/');
    expect(c).toMatchObject({ from: 'build', chown: '1:2', chmod: '644', link: true, parents: true, excludes: ['*.md', 'tmp'], sources: ['a', 'b/'], dest: '/dst/', contents: [] });
    expect(one('COPY', 'COPY ["a b", "/c d/"]')).toMatchObject({ sources: ['a b'], dest: '/c d/' });
    const h = one('COPY', "COPY <<EOF1 <<'EOF2' foo.txt /bar/\none $X\nEOF1\n\ttwo\nEOF2");
    expect(h.sources).toEqual(['foo.txt']);
    expect(h.contents).toEqual([
      { path: 'EOF1', data: 'one $X\n', expand: true },
      { path: 'EOF2', data: '\ttwo\n', expand: false },
    ]);
    expect(one('COPY', 'COPY <<-EOF /x\n\tTESTING\nEOF').contents).toEqual([{ path: 'EOF', data: 'TESTING\n', expand: true }]);
    expect(parseError('FROM a\nCOPY a').problem).toBe('COPY requires at least two arguments, but only one was provided. Destination could not be determined');
    expect(parseError('FROM a\nCOPY /foo <<EOF\nEOF').problem).toBe('COPY cannot accept a heredoc as a destination');
    expect(parseError('FROM a\nCOPY --checksum=sha256:x a b').problem).toBe('unknown flag: --checksum');
    expect(parseError('FROM a\nCOPY --from=$X a b').problem).toContain('variable expansion is not supported for --from');
    expect(parseError('FROM a\nCOPY --link=maybe a b').problem).toBe('expecting boolean value for flag --link, not: maybe');
    expect(parseError('FROM a\nCOPY --from a b').problem).toBe('missing a value on flag: --from');
    expect(parseError('FROM a\nCOPY --from=a --from=b a b').problem).toBe('duplicate flag specified: --from');
  });

  it('ADD: checksum, keep-git-dir, unpack', () => {
    const a = one('ADD', 'ADD --checksum=sha256:abc --keep-git-dir --unpack=false --chown=me https://x/y.tar /y');
    expect(a).toMatchObject({ checksum: 'sha256:abc', keepGitDir: true, unpack: false, chown: 'me', link: false, sources: ['https://x/y.tar'], dest: '/y' });
    const b = one('ADD', 'ADD a b');
    expect(b.keepGitDir).toBeUndefined();
    expect(b.unpack).toBeUndefined();
    expect(parseError('FROM a\nADD --from=x a b').problem).toBe('unknown flag: --from');
  });

  it('WORKDIR, USER, STOPSIGNAL, MAINTAINER take exactly one argument', () => {
    expect(one('WORKDIR', 'WORKDIR /a b').path).toBe('/a b');
    expect(one('USER', 'USER app:app').user).toBe('app:app');
    expect(one('STOPSIGNAL', 'STOPSIGNAL SIGKILL').signal).toBe('SIGKILL');
    expect(one('MAINTAINER', 'MAINTAINER Me <me@example.com>').maintainer).toBe('Me <me@example.com>');
    for (const kw of ['MAINTAINER', 'WORKDIR', 'USER', 'STOPSIGNAL']) {
      expect(parseError(`FROM a\n${kw}`).problem).toBe(`${kw} requires exactly one argument`);
    }
    expect(parseError('FROM a\nMAINTAINER --boo joe').problem).toBe('unknown flag: --boo');
  });

  it('EXPOSE (sorted as BuildKit), VOLUME (JSON or list)', () => {
    expect(one('EXPOSE', 'EXPOSE 8080 80/tcp 53/udp').ports).toEqual(['53/udp', '80/tcp', '8080']);
    expect(one('VOLUME', 'VOLUME /a /b').volumes).toEqual(['/a', '/b']);
    expect(one('VOLUME', 'VOLUME ["/a b", "/c"]').volumes).toEqual(['/a b', '/c']);
    expect(parseError('FROM a\nVOLUME [""]').problem).toBe('VOLUME specified can not be an empty string');
    for (const kw of ['EXPOSE', 'VOLUME', 'LABEL', 'ONBUILD', 'HEALTHCHECK']) {
      expect(parseError(`FROM a\n${kw}`).problem).toBe(`${kw} requires at least one argument`);
    }
  });

  it('SHELL must be JSON', () => {
    expect(one('SHELL', 'SHELL ["/bin/bash", "-c"]').shell).toEqual(['/bin/bash', '-c']);
    expect(parseError('FROM a\nSHELL /bin/bash -c').problem).toBe('SHELL requires the arguments to be in JSON form');
    expect(parseError('FROM a\nSHELL []').problem).toBe('SHELL requires at least one argument');
  });

  it('HEALTHCHECK: NONE, CMD forms, durations in nanoseconds', () => {
    expect(one('HEALTHCHECK', 'HEALTHCHECK NONE').health).toEqual({ test: ['NONE'], interval: 0, timeout: 0, startPeriod: 0, startInterval: 0, retries: 0 });
    expect(one('HEALTHCHECK', 'HEALTHCHECK --interval=5s --timeout=1m30s --start-period=1.5s --start-interval=100ms --retries=3 CMD curl -f http://x/ || exit 1').health).toEqual({
      test: ['CMD-SHELL', 'curl -f http://x/ || exit 1'],
      interval: 5e9,
      timeout: 90e9,
      startPeriod: 1.5e9,
      startInterval: 1e8,
      retries: 3,
    });
    expect(one('HEALTHCHECK', 'HEALTHCHECK cmd ["a", "b"]').health.test).toEqual(['CMD', 'a', 'b']);
    expect(parseError('FROM a\nHEALTHCHECK NONE x').problem).toBe('HEALTHCHECK NONE takes no arguments');
    expect(parseError('FROM a\nHEALTHCHECK CONNECT TCP 7000').problem).toBe('Unknown type "CONNECT" in HEALTHCHECK (try CMD)');
    expect(parseError('FROM a\nHEALTHCHECK CMD').problem).toBe('Missing command after HEALTHCHECK CMD');
    expect(parseError('FROM a\nHEALTHCHECK --interval=50ns CMD x').problem).toBe('Interval "interval" cannot be less than 1ms');
    expect(parseError('FROM a\nHEALTHCHECK --interval=5 CMD x').problem).toBe('time: invalid duration "5"');
    expect(parseError('FROM a\nHEALTHCHECK --retries=-1 CMD x').problem).toBe('--retries cannot be negative (-1)');
    expect(one('HEALTHCHECK', 'HEALTHCHECK --interval=0s CMD x').health.interval).toBe(0);
  });

  it('ONBUILD: keeps the trigger expression, refuses ONBUILD/FROM/MAINTAINER triggers', () => {
    expect(one('ONBUILD', 'ONBUILD RUN echo "hi"').expression).toBe('RUN echo "hi"');
    expect(one('ONBUILD', 'onbuild COPY <<EOF /x\nhello\nEOF').expression).toBe('COPY <<EOF /x\nhello\nEOF');
    expect(parseError('FROM a\nONBUILD ONBUILD RUN x').problem).toBe("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
    expect(parseError('FROM a\nONBUILD FROM scratch').problem).toBe("FROM isn't allowed as an ONBUILD trigger");
    expect(parseError('FROM a\nONBUILD maintainer me').problem).toBe("MAINTAINER isn't allowed as an ONBUILD trigger");
    // Triggers are parsed in the child build, as instructions.
    const [trigger] = parseInstructions(one('ONBUILD', 'ONBUILD ADD --chown=1 . /app').expression);
    expect(trigger).toMatchObject({ kind: 'ADD', chown: '1', sources: ['.'], dest: '/app' });
  });

  it('instructions are case-insensitive and keep their keyword', () => {
    const [i] = stage('rUn echo');
    expect(i).toMatchObject({ kind: 'RUN', keyword: 'rUn' });
  });
});

describe('errors', () => {
  it('are DockerfileParseError (BktError INVALID_ARGUMENT) with file:line:column and the line', () => {
    const err = parseError('FROM alpine\n\n  FOO bar\n');
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect(err.details).toMatchObject({ file: 'Dockerfile', line: 3, column: 3 });
    expect(err.message).toBe('Dockerfile:3:3: unknown instruction: FOO (did you mean FROM?)\n   3 |   FOO bar');
  });

  it('point at the offending token, also on continuation lines', () => {
    const err = parseError('FROM alpine\nRUN --network=host \\\n    --mount=type=bogus,target=/x \\\n    true');
    expect(err.details).toMatchObject({ line: 3, column: 13, endLine: 4 });
    expect(err.message.split('\n')[0]).toBe('Dockerfile:3:13: unsupported mount type "bogus"');
    const flag = parseError('FROM a\nCOPY --chmod=1 --frm=x a b');
    expect(flag.details).toMatchObject({ line: 2, column: 16 });
  });

  it('suggest close instruction names and use the given file name', () => {
    try {
      parseDockerfile('FROM a\nCOPPY a b', { filename: 'app.Dockerfile' });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message.split('\n')[0]).toBe('app.Dockerfile:2:1: unknown instruction: COPPY (did you mean COPY?)');
    }
  });

  it('report an unterminated heredoc at its start line', () => {
    const err = parseError('FROM a\nRUN cat <<EOF\nno end\n');
    expect(err.details).toMatchObject({ line: 2, column: 9 });
    expect(err.problem).toBe('unterminated heredoc EOF');
  });

  it('report a bad escape directive and an empty file', () => {
    expect(parseError('# escape=x\nFROM a').details).toMatchObject({ line: 1 });
    expect(parseError('').problem).toBe('file with no instructions');
  });
});
