import { packageConfig } from '../../tsup.shared.js';

export default packageConfig({ entry: { index: 'src/index.ts', 'testing/index': 'src/testing/index.ts' } });
