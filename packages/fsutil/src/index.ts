export { compilePattern, compilePatterns, parseDockerignore, cleanRelPath } from './patterns.js';
export type { Pattern, PatternMatcher } from './patterns.js';
export { resolveInRoot, resolveRelInRoot, joinInRoot } from './resolve.js';
export type { ResolveOptions } from './resolve.js';
export { walk, compareNames } from './walk.js';
export type { WalkEntry, WalkOptions } from './walk.js';
export { resolveWildcards, hasWildcard, compileSegment } from './glob.js';
export { checksum, hashFile } from './checksum.js';
