import { describe, expect, it } from 'vitest';
import { isBktError } from '@bkt/core';
import { convertDockerfile } from './convert.js';
import { decodeOps } from './testutil.js';

const amd64 = { os: 'linux', architecture: 'amd64' };
const convert = (text: string, opts: Parameters<typeof convertDockerfile>[1] = {}) => convertDockerfile(text, { targetPlatform: amd64, ...opts });

/** Lines `PREFIX A1=$A0$A0` … doubling a value `count` times. */
function doubling(keyword: string, count: number): string {
  return [`${keyword} A0=xx`, ...Array.from({ length: count }, (_, i) => `${keyword} A${i + 1}=$A${i}$A${i}`)].join('\n');
}

async function failure(text: string): Promise<{ message: string; line: unknown }> {
  try {
    await convert(text);
  } catch (err) {
    if (!isBktError(err)) throw err;
    return { message: err.message, line: err.details.line };
  }
  throw new Error('the conversion succeeded');
}

describe('expansion is bounded at every site, with the Dockerfile line', () => {
  // A20 would be 2^21 characters: the line that makes it is refused, in milliseconds.
  it.each([
    ['ARG in a stage', `FROM scratch\n${doubling('ARG', 41)}\nCOPY f /f`, 22],
    ['ENV', `FROM scratch\n${doubling('ENV', 41)}\nCOPY f /f`, 22],
    ['a global ARG', `${doubling('ARG', 41)}\nFROM scratch\nCOPY f /f`, 21],
  ])('%s', async (_what, text, line) => {
    const started = performance.now();
    const { message, line: reported } = await failure(text);
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(reported).toBe(line);
    expect(message).toMatch(new RegExp(`^Dockerfile:${line}:1: failed to process "\\$A19\\$A19": the expanded value is longer than 1 MiB`));
  });

  it('LABEL, WORKDIR, COPY and USER values', async () => {
    const big = `FROM scratch\n${doubling('ENV', 19)}\n`;
    for (const instr of ['LABEL l=$A19$A19', 'WORKDIR /$A19$A19', 'COPY f /$A19$A19', 'USER $A19$A19']) {
      const { message, line } = await failure(`${big}${instr}`);
      expect(line, instr).toBe(22);
      expect(message, instr).toMatch(/the limit of an expanded word/);
    }
  });

  it('the sum of many expansions (each line copying a 1 MiB value)', async () => {
    const text = `FROM scratch\n${doubling('ENV', 19)}\n${Array.from({ length: 200 }, (_, i) => `LABEL l${i}=$A19`).join('\n')}`;
    const { message, line } = await failure(text);
    expect(line).toBeGreaterThan(22);
    expect(message).toMatch(/variable expansion exceeds the limit of 64 MiB/);
  });
});

describe('conversion cost is linear in the number of instructions', () => {
  it('converts 50,000 ENV and ARG lines in seconds', async () => {
    const lines = Array.from({ length: 50_000 }, (_, i) => (i % 2 ? `ENV E${i}=value${i}` : `ARG A${i}=$E${i - 1}`));
    const started = performance.now();
    const r = await convert(`FROM scratch\n${lines.join('\n')}\nRUN true`);
    // A copy of the environment per instruction took minutes here.
    expect(performance.now() - started).toBeLessThan(20_000);
    const run = decodeOps(r.definition).find((o) => o.op.op?.$case === 'exec')!;
    const env = run.op.op?.$case === 'exec' ? run.op.op.value.meta!.env : [];
    expect(env).toHaveLength(50_000 + 1); // with PATH
    expect(env).toContain('A49998=value49997');
    expect(r.image.config.Env).toHaveLength(25_000 + 1);
    expect(r.image.history).toHaveLength(50_001);
  });
});

describe('deep Dockerfiles convert without recursion', () => {
  it('a chain of 10,000 WORKDIR ops', async () => {
    const text = `FROM scratch\n${Array.from({ length: 10_000 }, (_, i) => `WORKDIR /w${i % 2}`).join('\n')}`;
    const r = await convert(text);
    expect(r.definition.def).toHaveLength(10_001);
  });

  it('a chain of 10,000 stages, each copying from the one before', async () => {
    const stages = ['FROM scratch AS s0\nCOPY f /f', ...Array.from({ length: 10_000 }, (_, i) => `FROM scratch AS s${i + 1}\nCOPY --from=s${i} /f /f`)];
    const r = await convert(stages.join('\n'));
    expect(r.definition.def.length).toBeGreaterThan(10_000);
  });
});

describe('cancellation', () => {
  it('stops a long conversion soon after its signal aborts, with the signal reason', async () => {
    const text = `FROM scratch\n${Array.from({ length: 100_000 }, (_, i) => `ENV E${i}=${i}`).join('\n')}\nCOPY f /f`;
    const controller = new AbortController();
    const reason = new Error('stopped by the test');
    const converting = convert(text, { signal: controller.signal });
    // Abort once the conversion is under way (after the parse, which is synchronous).
    await new Promise((resolve) => setTimeout(resolve, 200));
    const abortedAt = performance.now();
    controller.abort(reason);
    await expect(converting).rejects.toBe(reason);
    expect(performance.now() - abortedAt).toBeLessThan(1_000);
  });
});
