import { packageConfig } from '../../tsup.shared.js';

// Split: the tar writer (tar-stream) is a chunk of its own, imported by a tar export only.
export default packageConfig({ splitting: true });
