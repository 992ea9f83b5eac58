import { describe, expect, it } from 'vitest';
import { EXPANSION_LIMITS, ExpansionBudget, ShellLex, envFromMap } from './shell.js';

/** The bounds of variable expansion hold in the lexer, so every expansion site has them. */
describe('expansion limits', () => {
  const MiB = 1 << 20;

  it('refuses a word that expands past the word limit, naming the limit', () => {
    const half = 'x'.repeat(MiB / 2 + 1);
    const lex = new ShellLex();
    expect(lex.processWord('$A', envFromMap({ A: half })).result).toBe(half);
    for (const word of ['$A$A', '"$A$A"', '${A}${A}', '${X:-$A$A}', 'pre${A}${A}']) {
      expect(() => lex.processWord(word, envFromMap({ A: half })), word).toThrow(/longer than 1 MiB \(1048576 characters\), the limit of an expanded word/);
    }
    expect(() => lex.processWords('$A $A', envFromMap({ A: half }))).toThrow(/limit of an expanded word/);
  });

  it('bounds what a ${V//pattern/replacement} produces', () => {
    const env = envFromMap({ A: 'x'.repeat(2048) });
    expect(() => new ShellLex().processWord('${A//?/$A}', env)).toThrow(/limit of an expanded word/);
    expect(new ShellLex().processWord('${A//x/yy}', env).result).toBe('y'.repeat(4096));
  });

  it('charges every substitution to a shared budget', () => {
    const budget = new ExpansionBudget(1000);
    const env = envFromMap({ A: 'a'.repeat(300) });
    const one = new ShellLex('\\', { budget });
    const other = new ShellLex('\\', { budget });
    one.processWord('$A', env);
    other.processWord('$A$A', env);
    expect(() => one.processWord('$A', env)).toThrow(/variable expansion exceeds the limit of 1 KiB \(1000 characters\) substituted in one Dockerfile/);
    expect(EXPANSION_LIMITS.maxSubstituted).toBe(64 * MiB);
  });

  it('refuses substitutions nested deeper than the limit, without overflowing the stack', () => {
    const nested = (n: number) => `${'${X:-'.repeat(n)}y${'}'.repeat(n)}`;
    expect(new ShellLex().processWord(nested(EXPANSION_LIMITS.maxNesting), envFromMap({})).result).toBe('y');
    expect(() => new ShellLex().processWord(nested(EXPANSION_LIMITS.maxNesting + 1), envFromMap({}))).toThrow(/nested more than 64 deep/);
    expect(() => new ShellLex().processWord(nested(20_000), envFromMap({}))).toThrow(/nested more than 64 deep/);
  });

  it('quotes only the start of a long word in its error', () => {
    const long = `${'a'.repeat(10_000)}\${`;
    let message = '';
    try {
      new ShellLex().processWord(long, envFromMap({}));
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^failed to process "a{200}…": /);
  });
});
