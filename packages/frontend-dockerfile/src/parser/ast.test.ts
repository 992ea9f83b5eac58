import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type RawNode, RawParseError, chompHeredocContent, heredocsFromLine, parseHeredoc, parseRaw, parseWords } from './ast.js';
import { goQuote } from './shell.js';

const testdata = new URL('./testdata/parser/', import.meta.url);

/** BuildKit's Node.Dump() s-expression of a raw node. */
function dump(node: RawNode): string {
  let s = node.command.toLowerCase();
  if (node.flags.length > 0) s += ` [${node.flags.map(goQuote).join(' ')}]`;
  if (node.child) s += ` (${dump(node.child)})`;
  else for (const a of node.args) s += ` ${goQuote(a)}`;
  return s.trim();
}

describe('raw parser: BuildKit testfiles', () => {
  const dirs = readdirSync(new URL('testfiles/', testdata));
  it('has the cases', () => expect(dirs.length).toBeGreaterThan(30));
  for (const dir of dirs) {
    it(dir, () => {
      const text = readFileSync(new URL(`testfiles/${dir}/Dockerfile`, testdata), 'utf8');
      const expected = readFileSync(new URL(`testfiles/${dir}/result`, testdata), 'utf8');
      const raw = parseRaw(text);
      expect(raw.nodes.map((n) => `(${dump(n)})`).join('\n') + '\n').toBe(expected);
    });
  }
  for (const dir of readdirSync(new URL('testfiles-negative/', testdata))) {
    it(`rejects ${dir}`, () => {
      const text = readFileSync(new URL(`testfiles-negative/${dir}/Dockerfile`, testdata), 'utf8');
      expect(() => parseRaw(text)).toThrow(RawParseError);
    });
  }
  it('records line ranges', () => {
    const raw = parseRaw(readFileSync(new URL('testfile-line/Dockerfile', testdata), 'utf8'));
    expect(raw.nodes.map((n) => [n.startLine, n.endLine])).toEqual([[5, 5], [11, 12], [17, 31]]);
  });
});

describe('raw parser: lines', () => {
  it('warns on empty continuation lines (not on comments)', () => {
    const raw = parseRaw(`
FROM alpine:3.6

RUN valid \\
    continuation

RUN something \\

    following \\

    more

RUN another \\

    thing

RUN non-indented \\
# this is a comment
   after-comment

RUN indented \\
    # this is an indented comment
    comment
	`);
    expect(raw.emptyContinuations.map((w) => w.instruction)).toEqual(['RUN something     following     more', 'RUN another     thing']);
    expect(raw.emptyContinuations[0].line).toBe(11);
    expect(raw.nodes[4].original).toBe('RUN non-indented    after-comment');
  });

  it('continues at EOF and handles CRLF', () => {
    const raw = parseRaw('FROM a\r\nRUN echo \\\r\n  hi\r\nRUN last \\');
    expect(raw.nodes.map(dump)).toEqual(['from "a"', 'run "echo   hi"', 'run "last"']);
    expect(raw.nodes[1]).toMatchObject({ startLine: 2, endLine: 3 });
  });

  it('strips a BOM and keeps comments above an instruction', () => {
    const raw = parseRaw('\uFEFF# first\n# second\nFROM x\n\n# lone\n\nRUN a');
    expect(raw.nodes[0].comments).toEqual(['first', 'second']);
    expect(raw.nodes[1].comments).toEqual(['lone']);
  });

  it('rejects an empty file and a line over 64 KiB', () => {
    expect(() => parseRaw('')).toThrow('file with no instructions');
    expect(() => parseRaw('# only\n\n')).toThrow('file with no instructions');
    expect(() => parseRaw(`FROM a\nLABEL a=${'x'.repeat(70000)}\n`)).toThrow('dockerfile line greater than max allowed size of 65535');
  });

  it('splits flags, honours -- and quotes', () => {
    const raw = parseRaw('COPY --from="my stage" --chown=a\\ b -- --notaflag /x\nRUN --mount=type=cache,target=/c echo hi');
    expect(raw.nodes[0].flags).toEqual(['--from=my stage', '--chown=a b']);
    expect(raw.nodes[0].args).toEqual(['--notaflag', '/x']);
    expect(raw.nodes[1].flags).toEqual(['--mount=type=cache,target=/c']);
    expect(raw.nodes[1].args).toEqual(['echo hi']);
  });

  it('falls back to shell form on invalid JSON, and refuses non-string arrays', () => {
    expect(parseRaw('CMD ["a", "b"]').nodes[0]).toMatchObject({ args: ['a', 'b'], json: true });
    expect(parseRaw("CMD ['a']").nodes[0]).toMatchObject({ args: ["['a']"], json: false });
    expect(parseRaw('CMD ["a"').nodes[0]).toMatchObject({ args: ['["a"'], json: false });
    expect(parseRaw('RUN []').nodes[0]).toMatchObject({ args: [], json: true });
    for (const bad of ['["a",42,"b"]', '["a",{},"b"]', '["a",["c"],"b"]', '["a",true,"b"]', '["a",null,"b"]']) {
      expect(() => parseRaw(`CMD ${bad}`)).toThrow('arrays must be comprised of strings only');
    }
    expect(parseRaw('CMD ["abc 123", "♥", "\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0000"]').nodes[0].args).toEqual(['abc 123', '♥', '" \\ / \b \f \n \r \t \u0000']);
  });

  it('splits words keeping quotes and escapes', () => {
    expect(parseWords('foo bar', '\\')).toEqual(['foo', 'bar']);
    expect(parseWords('foo\\ bar', '\\')).toEqual(['foo\\ bar']);
    expect(parseWords("foo bar 'abc xyz'", '\\')).toEqual(['foo', 'bar', "'abc xyz'"]);
    expect(parseWords('föo bàr "âbc xÿz"', '\\')).toEqual(['föo', 'bàr', '"âbc xÿz"']);
  });

  it('parses ENV in both forms and rejects a missing =', () => {
    expect(parseRaw('ENV foo bar baz').nodes[0].args).toEqual(['foo', 'bar baz', '']);
    expect(parseRaw('ENV foo=bar thing=star').nodes[0].args).toEqual(['foo', 'bar', '=', 'thing', 'star', '=']);
    expect(() => parseRaw('ENV foo')).toThrow('ENV must have two arguments');
    expect(() => parseRaw('LABEL a=b c')).toThrow(`can't find = in "c"`);
  });
});

describe('parser directives', () => {
  it('applies escape=` before the first instruction only', () => {
    const raw = parseRaw('# escape=`\nFROM a\nRUN echo \\\nRUN dir c:\\ `\n  x');
    expect(raw.escapeToken).toBe('`');
    expect(raw.nodes.map(dump)).toEqual(['from "a"', 'run "echo \\\\"', 'run "dir c:\\\\   x"']);
    const late = parseRaw('FROM a\n# escape=`\nRUN echo `\n');
    expect(late.escapeToken).toBe('\\');
  });
  it('is case-insensitive, allows blanks, rejects duplicates and bad escapes', () => {
    const raw = parseRaw('#   SYNTAX = docker/dockerfile:1  \n# Check=skip=all\nFROM a');
    expect(raw.directives).toEqual([
      { name: 'syntax', value: 'docker/dockerfile:1', line: 1 },
      { name: 'check', value: 'skip=all', line: 2 },
    ]);
    expect(() => parseRaw('# escape=\\\n# escape=`\nFROM a')).toThrow('only one escape parser directive can be used');
    expect(() => parseRaw('# escape=x\nFROM a')).toThrow("invalid escape token 'x'");
  });
  it('stops at the first non-directive line', () => {
    const raw = parseRaw('# a comment\n# syntax=x\nFROM a');
    expect(raw.directives).toEqual([]);
    expect(parseRaw('\n# syntax=x\nFROM a').directives).toEqual([]);
  });
  it('skips a shebang for syntax and check', () => {
    expect(parseRaw('#!/usr/bin/env buildctl\n# syntax=foo\nFROM a').directives).toEqual([{ name: 'syntax', value: 'foo', line: 2 }]);
  });
});

describe('heredocs', () => {
  it('extracts the heredocs of BuildKit parser_heredoc_test', () => {
    const raw = parseRaw(`
FROM alpine:3.6
RUN <<EMPTY
EMPTY
RUN 3<<EMPTY2
EMPTY2
RUN "<<NOHEREDOC"
RUN <<-UNINDENT2
	baz
	quux
	UNINDENT2
RUN <<-'NOEXPAND'
	don't expand $NAME
NOEXPAND
COPY <<FILE1 <<FILE2 /dest
content 1
FILE1
content 2
FILE2
COPY <<X <<Y /dest
Y
X
X
Y
RUN <<eo'f'
echo foo
eof
RUN <<eo\\'f
echo foo
eo'f
RUN <<'e'o\\'f
echo foo
eo'f
RUN <<'one two'
echo bar
one two
RUN <<$EOF
$EOF
RUN <<  EOF  > foo
EOF
USER <<INVALID
`);
    const docs = raw.nodes.slice(1).map((n) => n.heredocs.map((h) => ({ ...h })));
    expect(docs).toEqual([
      [{ name: 'EMPTY', content: '', expand: true, chomp: false, fileDescriptor: 0 }],
      [{ name: 'EMPTY2', content: '', expand: true, chomp: false, fileDescriptor: 3 }],
      [],
      [{ name: 'UNINDENT2', content: '\tbaz\n\tquux\n', expand: true, chomp: true, fileDescriptor: 0 }],
      [{ name: 'NOEXPAND', content: "\tdon't expand $NAME\n", expand: false, chomp: true, fileDescriptor: 0 }],
      [
        { name: 'FILE1', content: 'content 1\n', expand: true, chomp: false, fileDescriptor: 0 },
        { name: 'FILE2', content: 'content 2\n', expand: true, chomp: false, fileDescriptor: 0 },
      ],
      [
        { name: 'X', content: 'Y\n', expand: true, chomp: false, fileDescriptor: 0 },
        { name: 'Y', content: 'X\n', expand: true, chomp: false, fileDescriptor: 0 },
      ],
      [{ name: 'eof', content: 'echo foo\n', expand: false, chomp: false, fileDescriptor: 0 }],
      [{ name: "eo'f", content: 'echo foo\n', expand: true, chomp: false, fileDescriptor: 0 }],
      [{ name: "eo'f", content: 'echo foo\n', expand: false, chomp: false, fileDescriptor: 0 }],
      [{ name: 'one two', content: 'echo bar\n', expand: false, chomp: false, fileDescriptor: 0 }],
      [{ name: '$EOF', content: '', expand: true, chomp: false, fileDescriptor: 0 }],
      [{ name: 'EOF', content: '', expand: true, chomp: false, fileDescriptor: 0 }],
      [],
    ]);
    // The heredoc body lines count in the instruction's range.
    expect(raw.nodes[6]).toMatchObject({ startLine: 15, endLine: 19 });
  });

  it('ignores heredocs in JSON form and in other instructions, and in ONBUILD only for RUN/COPY/ADD', () => {
    expect(parseRaw('RUN ["<<EOF"]').nodes[0].heredocs).toEqual([]);
    expect(parseRaw('ENV a=<<EOF\nEOF').nodes).toHaveLength(2);
    const ob = parseRaw('ONBUILD RUN <<EOF\necho hi\nEOF\n');
    expect(ob.nodes).toHaveLength(1);
    expect(ob.nodes[0].heredocs[0]).toMatchObject({ name: 'EOF', content: 'echo hi\n' });
  });

  it('fails on an unterminated heredoc, with its range', () => {
    try {
      parseRaw('FROM a\nRUN <<EOF\necho\n');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(RawParseError);
      expect((err as RawParseError).message).toBe('unterminated heredoc EOF');
      expect((err as RawParseError).startLine).toBe(2);
    }
  });

  it('parses heredoc words', () => {
    for (const w of ['<<EOF', "<<'EOF'", '<<"EOF"', '<<-EOF', "<<-'EOF'", '<<-"EOF"', '<<EO"F"', '<< EOF', '<<- EOF']) {
      expect(parseHeredoc(w)?.name, w).toBe('EOF');
    }
    for (const w of ['', 'EOF', '<<', '<<-', '<EOF', '<<<EOF', '<<EOF sh']) expect(parseHeredoc(w), w).toBeUndefined();
    for (const w of ["<<'EOF", '<<"EOF', "<<EOF'", '<<EOF"']) expect(() => parseHeredoc(w), w).toThrow();
    expect(heredocsFromLine('RUN << -EOF').map((h) => h.name)).toEqual(['-EOF']);
    expect(heredocsFromLine('RUN 4<<EOF <<EOF2').map((h) => h.name)).toEqual(['EOF', 'EOF2']);
    expect(heredocsFromLine(`RUN '<<EOF' "<<EOF"`)).toEqual([]);
    expect(chompHeredocContent('\thello\n\t\tworld\n')).toBe('hello\nworld\n');
  });
});
