import { describe, expect, it } from 'vitest';
import { outputTargets } from './solve.js';

describe('outputTargets: what comes back to this machine over the session', () => {
  it('maps each client output to its exporter index: directories, files, stdout; images stay on the daemon', () => {
    expect(
      outputTargets([
        { type: 'image', name: 'r/x', push: 'true' },
        { type: 'local', dest: '/out' },
        { type: 'tar', dest: '-' },
        { type: 'oci', dest: '/img', tar: 'false' },
        { type: 'docker', dest: '/img.tar' },
      ]),
    ).toEqual({ 1: { type: 'dir', dest: '/out' }, 2: { type: 'stdout' }, 3: { type: 'dir', dest: '/img' }, 4: { type: 'file', dest: '/img.tar' } });
  });

  it('refuses two outputs of one type written here (bktd tells them apart by type)', () => {
    expect(() => outputTargets([{ type: 'local', dest: '/a' }, { type: 'local', dest: '/b' }])).toThrow('--output type=local: through a daemon (--addr) a build writes one output of each type to this machine');
  });
});
