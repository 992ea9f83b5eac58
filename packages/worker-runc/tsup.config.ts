import { packageConfig } from '../../tsup.shared.js';

// Two entries: the plugin, and the container executor (`./runc-executor`), whose runc code the plugin only imports dynamically.
export default packageConfig({ entry: ['src/index.ts', 'src/runc-executor.ts'] });
