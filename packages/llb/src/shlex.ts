/**
 * Splits a command line into words like a POSIX shell would, without
 * expanding anything (github.com/google/shlex, used by Go's `llb.Shlex`):
 * whitespace separates words; single quotes keep everything literal; double
 * quotes keep everything but `\"`, `\\`, `\$`, `` \` `` and `\<newline>`; a
 * backslash outside quotes escapes the next character; `#` at the start of a
 * word starts a comment.
 */
export function shlexSplit(input: string): string[] {
  const words: string[] = [];
  let word: string | null = null;
  let i = 0;
  const push = () => {
    if (word !== null) words.push(word);
    word = null;
  };
  while (i < input.length) {
    const ch = input[i];
    if (/\s/.test(ch)) {
      push();
      i++;
    } else if (ch === '#' && word === null) {
      while (i < input.length && input[i] !== '\n') i++;
    } else if (ch === "'") {
      const end = input.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated single quote in ${JSON.stringify(input)}`);
      word = (word ?? '') + input.slice(i + 1, end);
      i = end + 1;
    } else if (ch === '"') {
      let j = i + 1;
      let out = '';
      for (;;) {
        if (j >= input.length) throw new Error(`unterminated double quote in ${JSON.stringify(input)}`);
        const c = input[j];
        if (c === '"') break;
        if (c === '\\' && j + 1 < input.length && '"\\$`\n'.includes(input[j + 1])) {
          if (input[j + 1] !== '\n') out += input[j + 1];
          j += 2;
          continue;
        }
        out += c;
        j++;
      }
      word = (word ?? '') + out;
      i = j + 1;
    } else if (ch === '\\') {
      if (i + 1 >= input.length) throw new Error(`trailing backslash in ${JSON.stringify(input)}`);
      if (input[i + 1] !== '\n') word = (word ?? '') + input[i + 1];
      i += 2;
    } else {
      word = (word ?? '') + ch;
      i++;
    }
  }
  push();
  return words;
}
