import { describe, expect, it } from 'vitest';
import { parseDockerfile } from './dockerfile.js';
import { DockerfileParseError } from './errors.js';
import { expandInstruction } from './expand.js';
import type { Instruction } from './instructions.js';
import { envFromList } from './shell.js';

function instr(body: string, escape?: string): Instruction {
  const head = escape ? `# escape=${escape}\n` : '';
  return parseDockerfile(`${head}FROM busybox\n${body}`, { skipChecks: true }).stages[0].instructions[0];
}
const env = envFromList(['HOME=/root', 'NAME=app', 'EMPTY=', 'PORTS=80 443/udp', 'UID=1000']);

describe('expandInstruction', () => {
  it('expands ENV and LABEL keys and values, removing quotes', () => {
    const r = expandInstruction(instr('ENV A=$HOME/x B="${NAME} y" ${NAME}_K=v C=\'$NAME\''), env);
    expect(r.instruction.kind === 'ENV' && r.instruction.env).toEqual([
      { key: 'A', value: '/root/x', legacy: false },
      { key: 'B', value: 'app y', legacy: false },
      { key: 'app_K', value: 'v', legacy: false },
      { key: 'C', value: '$NAME', legacy: false },
    ]);
    const l = expandInstruction(instr('LABEL "org.name"="${NAME:-none}" v=${MISSING:-dflt}'), env);
    expect(l.instruction.kind === 'LABEL' && l.instruction.labels.map((kv) => [kv.key, kv.value])).toEqual([
      ['org.name', 'app'],
      ['v', 'dflt'],
    ]);
    expect([...l.unmatched]).toEqual(['MISSING']);
  });

  it('expands COPY/ADD paths and flags, and unquoted heredoc bodies without quote removal', () => {
    const c = expandInstruction(instr('COPY --chown=${UID}:${UID} --chmod=${MODE:-755} $NAME/* "/opt/$NAME/"'), env).instruction;
    expect(c).toMatchObject({ chown: '1000:1000', chmod: '755', sources: ['app/*'], dest: '/opt/app/' });
    // Shell-form COPY splits on blanks before expansion (as BuildKit): quoted blanks need the JSON form.
    expect(() => expandInstruction(instr('COPY a "/b c/"'), env)).toThrow('unexpected end of statement');
    expect(expandInstruction(instr('COPY ["a", "/$NAME dir/"]'), env).instruction).toMatchObject({ dest: '/app dir/' });
    const a = expandInstruction(instr('ADD --checksum=sha256:${SUM:-00} http://x/$NAME.tgz /'), env).instruction;
    expect(a).toMatchObject({ checksum: 'sha256:00', sources: ['http://x/app.tgz'], dest: '/' });
    const h = expandInstruction(instr("COPY <<A <<'B' /d/\nhome=\"$HOME\" \\$NAME\nA\nraw=$HOME\nB"), env).instruction;
    expect(h.kind === 'COPY' && h.contents).toEqual([
      { path: 'A', data: 'home="/root" $NAME\n', expand: true },
      { path: 'B', data: 'raw=$HOME\n', expand: false },
    ]);
  });

  it('expands WORKDIR, USER, VOLUME, STOPSIGNAL, EXPOSE (splitting words)', () => {
    expect(expandInstruction(instr('WORKDIR $HOME/src'), env).instruction).toMatchObject({ path: '/root/src' });
    expect(expandInstruction(instr('USER ${UID}:${GID:-0}'), env).instruction).toMatchObject({ user: '1000:0' });
    expect(expandInstruction(instr('VOLUME $HOME /data'), env).instruction).toMatchObject({ volumes: ['/root', '/data'] });
    expect(expandInstruction(instr('STOPSIGNAL ${SIG:-SIGTERM}'), env).instruction).toMatchObject({ signal: 'SIGTERM' });
    expect(expandInstruction(instr('EXPOSE $PORTS 8080'), env).instruction).toMatchObject({ ports: ['80', '443/udp', '8080'] });
  });

  it('leaves RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD alone but expands RUN --mount options', () => {
    for (const body of ['CMD echo $HOME', 'ENTRYPOINT ["$HOME"]', 'SHELL ["$HOME"]', 'HEALTHCHECK CMD $HOME', 'ONBUILD RUN $HOME', 'MAINTAINER $NAME']) {
      const i = instr(body);
      const r = expandInstruction(i, env);
      expect(r.instruction).toEqual(i);
      expect(r.unmatched.size + r.matched.size).toBe(0);
    }
    const run = expandInstruction(instr('RUN --mount=type=cache,target=$HOME/.cache,uid=$UID,id=${NAME} echo $HOME'), env).instruction;
    expect(run).toMatchObject({ command: ['echo $HOME'], mounts: [{ type: 'cache', target: '/root/.cache', uid: 1000, id: 'app' }] });
    expect(() => expandInstruction(instr('RUN --mount=type=cache,target=/x,uid=$NAME true'), env)).toThrow('invalid value app for uid');
  });

  it('honours the escape directive', () => {
    const r = expandInstruction(instr('ENV A=`$HOME B=c:\\dir', '`'), env, { escapeToken: '`' });
    expect(r.instruction.kind === 'ENV' && r.instruction.env.map((kv) => kv.value)).toEqual(['$HOME', 'c:\\dir']);
  });

  it('reports unmatched variables and fails on ${V:?}', () => {
    const r = expandInstruction(instr('WORKDIR /$A/${B:-x}/${C:+y}/$HOME'), env);
    expect([...r.unmatched].sort()).toEqual(['A', 'B', 'C']);
    expect([...r.matched]).toEqual(['HOME']);
    try {
      expandInstruction(instr('USER ${WHO:?must be set}'), env);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(DockerfileParseError);
      expect((err as DockerfileParseError).message.split('\n')[0]).toBe('Dockerfile:2:1: failed to process "${WHO:?must be set}": WHO: must be set');
    }
  });

  it('expands FROM with global args and ARG defaults', () => {
    const df = parseDockerfile('ARG V=3\nFROM --platform=$P alpine:$V\nARG X=$HOME', { skipChecks: true });
    const from = expandInstruction(df.stages[0].from, envFromList(['V=3.20', 'P=linux/arm64'])).instruction;
    expect(from).toMatchObject({ baseName: 'alpine:3.20', platform: 'linux/arm64' });
    const arg = expandInstruction(df.stages[0].instructions[0], env).instruction;
    expect(arg.kind === 'ARG' && arg.args).toEqual([{ key: 'X', value: '/root' }]);
  });

  it('does not modify the parsed instruction', () => {
    const i = instr('ENV A=$HOME');
    expandInstruction(i, env);
    expect(i.kind === 'ENV' && i.env[0].value).toBe('$HOME');
  });
});
