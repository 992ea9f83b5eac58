import { packageConfig } from '../../tsup.shared.js';

export default packageConfig({ entry: ['src/index.ts', 'src/bin.ts'], dts: { entry: 'src/index.ts' } });
