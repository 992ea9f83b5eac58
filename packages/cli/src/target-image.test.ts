import { describe, expect, it } from 'vitest';
import { isBktError, type TargetImageConfig } from '@bkt/core';
import { targetImageConfig } from './target-image.js';

const where = 'target "app"';
const base = {
  created: '2024-01-01T00:00:00Z',
  architecture: 'arm64',
  os: 'linux',
  config: {
    Env: ['PATH=/usr/bin:/bin', 'LANG=C'],
    Cmd: ['sh'],
    WorkingDir: '/srv',
    User: 'nobody',
    ExposedPorts: { '80/tcp': {} },
    Labels: { base: 'yes' },
  },
  rootfs: { type: 'layers', diff_ids: ['sha256:aa'] },
  history: [{ created_by: 'base' }],
};

const made = (input: Parameters<typeof targetImageConfig>[0]) => {
  const bytes = targetImageConfig(input);
  return bytes ? (JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown> & { config: Record<string, unknown> }) : undefined;
};
const over = (spec: TargetImageConfig) => made({ base: Buffer.from(JSON.stringify(base)), spec, where });

function errorOf(spec: unknown): string {
  try {
    targetImageConfig({ spec: spec as TargetImageConfig, where });
  } catch (err) {
    if (isBktError(err, 'CONFIG')) return err.message;
    throw err;
  }
  throw new Error('no error');
}

describe('targetImageConfig', () => {
  it('says nothing without a base, settings or a platform (the exporter\'s default applies)', () => {
    expect(targetImageConfig({ where })).toBeUndefined();
  });

  it('without a base: the default config, for the platform given', () => {
    expect(made({ platform: { os: 'linux', architecture: 'arm', variant: 'v7' }, where })).toEqual({
      architecture: 'arm',
      os: 'linux',
      variant: 'v7',
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: [] },
    });
  });

  it('keeps the base image\'s config but its creation time', () => {
    const c = over({});
    expect(c).toMatchObject({ architecture: 'arm64', os: 'linux', config: base.config, history: base.history });
    expect(c).not.toHaveProperty('created');
  });

  it('sets env in place or at the end, workdir relative to the base\'s, ports and labels added to the base\'s', () => {
    const c = over({ env: { LANG: 'C.UTF-8', APP: '1' }, workdir: 'app', exposedPorts: [8080, '53/udp', '9000-9001'], labels: { app: 'yes', base: 'no' } })!.config;
    expect(c.Env).toEqual(['PATH=/usr/bin:/bin', 'LANG=C.UTF-8', 'APP=1']);
    expect(c.WorkingDir).toBe('/srv/app');
    expect(c.ExposedPorts).toEqual({ '80/tcp': {}, '8080/tcp': {}, '53/udp': {}, '9000-9001/tcp': {} });
    expect(c.Labels).toEqual({ base: 'no', app: 'yes' });
    expect(over({ workdir: '/abs' })!.config.WorkingDir).toBe('/abs');
  });

  it('an entrypoint clears the base\'s cmd unless a cmd is given too, as a Dockerfile\'s ENTRYPOINT', () => {
    expect(over({ entrypoint: ['/app'] })!.config).not.toHaveProperty('Cmd');
    expect(over({ entrypoint: ['/app'], cmd: ['--help'] })!.config).toMatchObject({ Entrypoint: ['/app'], Cmd: ['--help'] });
    expect(over({ cmd: ['echo'] })!.config.Cmd).toEqual(['echo']);
  });

  it('healthcheck durations in nanoseconds; user and stop signal as given', () => {
    const c = over({
      healthcheck: { test: ['CMD', 'wget', '-q', 'localhost'], interval: '1m30s', timeout: '500ms', startPeriod: '2s', startInterval: '1.5s', retries: 2 },
      user: '1000:1000',
      stopSignal: 'SIGQUIT',
    })!.config;
    expect(c.Healthcheck).toEqual({ Test: ['CMD', 'wget', '-q', 'localhost'], Interval: 90e9, Timeout: 5e8, StartPeriod: 2e9, StartInterval: 1.5e9, Retries: 2 });
    expect([c.User, c.StopSignal]).toEqual(['1000:1000', 'SIGQUIT']);
    expect(over({ healthcheck: { test: ['NONE'] } })!.config.Healthcheck).toEqual({ Test: ['NONE'] });
  });

  it('names what is wrong in a JS config\'s settings', () => {
    expect(errorOf({ entryPoint: ['sh'] })).toMatch(/^target "app": unknown image setting "entryPoint" \(known: entrypoint, cmd, /);
    expect(errorOf({ cmd: 'sh' })).toBe('target "app": image.cmd must be a list of strings, got the string "sh"');
    expect(errorOf({ env: { A: 1 } })).toBe('target "app": image.env must be an object of strings, got an object');
    expect(errorOf({ user: 0 })).toBe('target "app": image.user must be a string, got number 0');
    expect(errorOf({ exposedPorts: ['80/icmp'] })).toMatch(/image\.exposedPorts: "80\/icmp" is not a port/);
    expect(errorOf({ exposedPorts: [0] })).toMatch(/image\.exposedPorts: "0" is not a port/);
    expect(errorOf({ healthcheck: { test: ['CMD-SHELL'] } })).toMatch(/image\.healthcheck\.test must be \['CMD', prog, …args\]/);
    expect(errorOf({ healthcheck: { test: ['NONE'], every: '1s' } })).toMatch(/unknown image\.healthcheck setting "every"/);
    expect(errorOf({ healthcheck: { test: ['NONE'], interval: 30 } })).toMatch(/image\.healthcheck\.interval must be a duration string/);
    expect(errorOf({ healthcheck: { test: ['NONE'], interval: '30' } })).toMatch(/image\.healthcheck\.interval must be a duration like '30s'/);
  });
});
