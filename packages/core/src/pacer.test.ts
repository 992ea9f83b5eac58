import { describe, expect, it } from 'vitest';
import { Pacer } from './pacer.js';

describe('Pacer', () => {
  it('is due once a slice of work has lasted sliceMs, and a pause starts a new slice', async () => {
    const pacer = new Pacer(undefined, 20);
    expect(pacer.due()).toBe(false);
    const until = performance.now() + 25;
    while (performance.now() < until) {
      // busy: a synchronous slice of work
    }
    expect(pacer.due()).toBe(true);
    await pacer.pause();
    expect(pacer.due()).toBe(false);
  });

  it('lets the event loop run during a long loop, so an abort stops the loop with its reason', async () => {
    const controller = new AbortController();
    const pacer = new Pacer(controller.signal, 2);
    setTimeout(() => controller.abort(new Error('interrupted')), 20);
    let iterations = 0;
    const loop = async () => {
      for (;;) {
        if (pacer.due()) await pacer.pause();
        iterations++;
      }
    };
    await expect(loop()).rejects.toThrow('interrupted');
    expect(iterations).toBeGreaterThan(0);
  });
});
