import { packageConfig } from '../../tsup.shared.js';

export default packageConfig({ entry: ['src/index.ts', 'src/testing/index.ts'], external: ['vitest'] });
