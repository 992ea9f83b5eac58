import { DefBuilder } from '../graphs.test-util.js';

/** A base file, then the whole `test://context` copied to /big over it (an overlay mount while it runs). */
export function bigCopyGraph(): Uint8Array {
  const g = new DefBuilder();
  const src = g.source('test://context');
  const base = g.mkfile(null, { '/base': 'base' });
  return g.build(g.copy(base, src, '/', '/big'));
}
