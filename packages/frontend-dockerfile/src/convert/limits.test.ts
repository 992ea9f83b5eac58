import { describe, expect, it } from 'vitest';
import { isBktError } from '@bkt/core';
import { convertDockerfile } from './convert.js';
import { decodeOps } from './decoded-ops.test-util.js';

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

/** `ENV A0=xx`, 19 doubling lines (A19 = 1 MiB), `ENV B0..B29=$A19`, then `runs` RUNs: the review's 1.9 GB definition. */
function environmentBlowUp(runs: number): string {
  return [
    'FROM scratch',
    doubling('ENV', 19),
    ...Array.from({ length: 30 }, (_, i) => `ENV B${i}=$A19`),
    ...Array.from({ length: runs }, (_, i) => `RUN echo ${i}`),
  ].join('\n');
}

describe('the environment a RUN carries is bounded (Linux exec limits)', () => {
  it('refuses a RUN whose environment has a variable over 128 KiB, at the RUN line, fast', async () => {
    const started = performance.now();
    const { message, line } = await failure(environmentBlowUp(60));
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(line).toBe(52);
    expect(message).toMatch(
      /^Dockerfile:52:1: the environment variable A19 is 1048581 bytes \(as NAME=value\), more than the 128 KiB \(131072 bytes\) Linux allows one variable of a process \(MAX_ARG_STRLEN\)/,
    );
  });

  it('refuses a RUN whose environment passes 2 MiB in total', async () => {
    const vars = Array.from({ length: 34 }, (_, i) => `ENV V${i}=$A15`); // 34 × 64 KiB
    const { message, line } = await failure(`FROM scratch\n${doubling('ENV', 15)}\n${vars.join('\n')}\nRUN true`);
    expect(line).toBe(52);
    expect(message).toMatch(/the environment of this RUN is \d+ bytes \(\d+ variables\), more than the 2 MiB \(2097152 bytes\) Linux allows a process's environment \(ARG_MAX\)/);
  });

  it('accepts an environment just within both limits, and long values no RUN uses', async () => {
    const r = await convert(`FROM scratch\n${doubling('ENV', 15)}\n${Array.from({ length: 10 }, (_, i) => `ENV V${i}=$A15`).join('\n')}\nRUN true\nENV BIG=$A15$A15$A15`);
    expect(r.image.config.Env?.find((e) => e.startsWith('BIG='))).toHaveLength('BIG='.length + 3 * (1 << 16));
  });
});

describe('stages built on stages', () => {
  const chain = (n: number) => `FROM scratch AS s0\n${Array.from({ length: n }, (_, i) => `FROM s${i} AS s${i + 1}\nENV V${i}=${i}`).join('\n')}\nRUN true`;

  it('a chain of 2,500 converts in seconds, with the whole history and environment', async () => {
    const started = performance.now();
    const r = await convert(chain(2_500));
    // Each stage deep-copied its base's history: this took 11.8 s.
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(r.image.history).toHaveLength(2_501);
    expect(r.image.config.Env).toHaveLength(2_501);
    const run = decodeOps(r.definition).find((o) => o.op.op?.$case === 'exec')!;
    expect(run.op.op?.$case === 'exec' && run.op.op.value.meta!.env).toHaveLength(2_501);
  });

  it('a chain longer than 3,000 is refused at the FROM that passes the limit', async () => {
    const started = performance.now();
    const { message, line } = await failure(chain(10_000));
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(line).toBe(2 * 3_001);
    expect(message).toMatch(/^Dockerfile:6002:1: stage s3001 is built on a chain of more than 3000 stages \(each FROM the one before\), the limit of a chain/);
  });

  it('stages built on one base do not see each other\'s ENV or history', async () => {
    const text = 'FROM scratch AS base\nENV A=1\nFROM base AS left\nENV L=1\nFROM base AS right\nENV R=1\nCOPY --from=left /f /f';
    const r = await convert(text);
    expect(r.image.config.Env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=1', 'R=1']);
    expect(r.image.history?.map((h) => h.created_by)).toEqual(['ENV A=1', 'ENV R=1', 'COPY /f /f # buildkit']);
  });
});

describe('every phase of a long conversion yields to its signal', () => {
  /** Aborts `convert(text)` `afterMs` in; the time from when the abort was due to the rejection (a timer cannot fire while a phase runs without pausing). */
  async function abortAfter(text: string, afterMs: number): Promise<number> {
    const controller = new AbortController();
    const reason = new Error('stopped by the test');
    const converting = convert(text, { signal: controller.signal });
    const abortDueAt = performance.now() + afterMs;
    setTimeout(() => controller.abort(reason), afterMs);
    await expect(converting).rejects.toBe(reason);
    return performance.now() - abortDueAt;
  }

  it('stops during parsing soon after the signal aborts', async () => {
    const lines = Array.from({ length: 300_000 }, (_, i) => `LABEL l${i}=v${i}`);
    expect(await abortAfter(`FROM scratch\n${lines.join('\n')}\nCOPY f /f`, 20)).toBeLessThan(500);
  });

  it('stops while converting RUNs that carry large environments soon after the signal aborts', async () => {
    // 15 variables of 120 KiB (within the environment limits), repeated by each of 150 RUNs: a 270 MB definition.
    // (Marshalling's own pause points are proven by @bkt/llb's marshalPaced test.)
    const vars = Array.from({ length: 15 }, (_, i) => `ENV V${i}=${String(i % 10).repeat(60_000)}$V${i}`.replace(`$V${i}`, '$H'));
    const text = `FROM scratch\nENV H=${'h'.repeat(60_000)}\n${vars.join('\n')}\n${Array.from({ length: 150 }, (_, i) => `RUN echo ${i}`).join('\n')}`;
    expect(await abortAfter(text, 100)).toBeLessThan(500);
  });
});
