import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDockerfile } from './dockerfile.js';
import { DockerfileParseError } from './errors.js';
import { expandInstruction } from './expand.js';
import { envFromList } from './shell.js';

/**
 * Property: whatever the input, parsing (and expanding every instruction)
 * either succeeds or throws DockerfileParseError — never anything else.
 */

const keywords = ['FROM', 'RUN', 'CMD', 'LABEL', 'MAINTAINER', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL', 'FOO'];
const keyword = fc.tuple(fc.constantFrom(...keywords), fc.constantFrom('upper', 'lower', 'mixed')).map(([k, c]) =>
  c === 'upper' ? k : c === 'lower' ? k.toLowerCase() : k[0] + k.slice(1).toLowerCase(),
);
const flagName = fc.constantFrom('from', 'chown', 'chmod', 'link', 'parents', 'exclude', 'checksum', 'keep-git-dir', 'unpack', 'platform', 'mount', 'network', 'security', 'interval', 'timeout', 'start-period', 'start-interval', 'retries', 'bogus');
const mountValue = fc
  .array(
    fc.oneof(
      fc.constantFrom('type=bind', 'type=cache', 'type=tmpfs', 'type=secret', 'type=ssh', 'type=x', 'ro', 'rw', 'required', 'readonly=maybe', 'sharing=locked', 'sharing=x'),
      fc.tuple(fc.constantFrom('target', 'src', 'from', 'id', 'size', 'mode', 'uid', 'gid', 'env', 'dst', 'bogus'), fc.constantFrom('/x', '1', '0755', '64m', '$V', '"q"', '', 'abc')).map(([k, v]) => `${k}=${v}`),
    ),
    { maxLength: 5 },
  )
  .map((fields) => fields.join(','));
const flagValue = fc.oneof(fc.constantFrom('', 'true', 'false', '5s', '1m30s', '-1', '10', 'linux/amd64', '$X', '"a b"', "'c'", 'none', 'host', 'insecure'), mountValue);
const flag = fc.oneof(
  fc.tuple(flagName, flagValue).map(([n, v]) => `--${n}=${v}`),
  flagName.map((n) => `--${n}`),
  fc.constant('--'),
);
const word = fc.oneof(
  fc.constantFrom('a', '/dst/', '.', 'alpine:3', 'AS', 'as', 'build', 'scratch', 'NONE', 'CMD', 'x=1', 'k="v w"', "'q'", '"', "'", '\\', '`', '$', '${', '${A:-b}', '${A#*}', '${A/%/x}', '$A', '<<EOF', '<<-EOF', "<<'EOF'", '2<<X', '#', '=', '==', '[', ']', '["a", "b"]', '["a", 1]', '[]', '{}', 'é', '\u00a0', '\t'),
  fc.string({ maxLength: 8 }),
);
const line = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(keyword, fc.array(flag, { maxLength: 3 }), fc.array(word, { maxLength: 6 })).map(([k, f, w]) => [k, ...f, ...w].join(' ')) },
  { weight: 1, arbitrary: fc.constantFrom('# escape=`', '# escape=\\', '# syntax=x', '# check=skip=all', '# check=error=true', '# check=bogus', '# comment', '', '   ', '\\', 'EOF', 'X', '\t\tEOF', '#!/bin/sh') },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
);
const continuation = fc.constantFrom('\n', '\n', '\n', ' \\\n', '`\n', '\r\n', ' \\\n\n');
const dockerfile = fc
  .tuple(fc.boolean(), fc.array(fc.tuple(line, continuation), { maxLength: 12 }))
  .map(([withFrom, parts]) => (withFrom ? 'FROM alpine\n' : '') + parts.map(([l, c]) => l + c).join(''));

describe('parser fuzz', () => {
  it('throws nothing but DockerfileParseError on 10,000 generated Dockerfiles', () => {
    const env = envFromList(['A=1', 'X=linux', 'V=v']);
    let parsed = 0;
    let rejected = 0;
    fc.assert(
      fc.property(dockerfile, (text) => {
        try {
          const df = parseDockerfile(text);
          parsed++;
          for (const stage of df.stages) {
            for (const instr of [stage.from, ...stage.instructions]) {
              try {
                expandInstruction(instr, env, { escapeToken: df.escapeToken });
              } catch (err) {
                if (!(err instanceof DockerfileParseError)) throw err;
              }
            }
          }
        } catch (err) {
          if (!(err instanceof DockerfileParseError)) throw err;
          expect(err.message).toMatch(/^Dockerfile:\d+:\d+: /);
          rejected++;
        }
      }),
      { numRuns: 10_000, seed: 42 },
    );
    // Both outcomes must be exercised for the property to mean anything.
    expect(parsed).toBeGreaterThan(500);
    expect(rejected).toBeGreaterThan(500);
  });

  it('survives arbitrary unicode text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 200 }), (text) => {
        try {
          parseDockerfile(`FROM a\n${text}`);
        } catch (err) {
          if (!(err instanceof DockerfileParseError)) throw err;
        }
      }),
      { numRuns: 2_000, seed: 7 },
    );
  });
});
