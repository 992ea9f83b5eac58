/** File metadata as transferred by fsutil (proto package `fsutil.types`): `Stat`. */
export * from './gen/github.com/tonistiigi/fsutil/types/stat.js';
