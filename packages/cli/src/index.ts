/**
 * @bkt/cli: the `bkt` command. The executable is `bin/bkt.js`; this entry
 * exposes the pieces other tools reuse: the default preset, `main()` (run the
 * CLI in-process with given streams), and the option parsers.
 */
export { defaultPreset } from './preset.js';
export { main, interruption, type Io } from './program.js';
export { parseOutput, parseDuration, parseBytes, defaultRoot, humanSize } from './options.js';
export { createDisplay, type ProgressDisplay, type ProgressMode } from './progress/displays.js';
export { marshalTarget } from './target-build.js';
