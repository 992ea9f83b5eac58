import { createRequire } from 'node:module';
import type * as Tapable from 'tapable';

/** The tapable hook classes `createHooks` builds its hooks from. */
export interface HookClasses {
  AsyncParallelHook: typeof Tapable.AsyncParallelHook;
  AsyncSeriesBailHook: typeof Tapable.AsyncSeriesBailHook;
  AsyncSeriesHook: typeof Tapable.AsyncSeriesHook;
  AsyncSeriesWaterfallHook: typeof Tapable.AsyncSeriesWaterfallHook;
  SyncHook: typeof Tapable.SyncHook;
}

const NAMES = ['AsyncParallelHook', 'AsyncSeriesBailHook', 'AsyncSeriesHook', 'AsyncSeriesWaterfallHook', 'SyncHook'] as const;

/** The codes of a `require` whose path cannot be resolved (a package "exports" map that hides it, or no such file). */
const UNRESOLVED = new Set(['ERR_PACKAGE_PATH_NOT_EXPORTED', 'MODULE_NOT_FOUND']);

/**
 * The hook classes, each from its own file `tapable/lib/<Class>.js` (not
 * tapable's index, which loads every kind of hook); when a tapable version
 * does not let those paths be resolved, from tapable's main entry instead.
 * tapable is CommonJS and required, not imported: an ESM import of a CommonJS
 * module has Node parse its source for export names first.
 */
export function loadHookClasses(load: (id: string) => unknown): HookClasses {
  try {
    return Object.fromEntries(NAMES.map((name) => [name, load(`tapable/lib/${name}.js`)])) as unknown as HookClasses;
  } catch (err) {
    if (!UNRESOLVED.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
  }
  const tapable = load('tapable') as Record<string, unknown>;
  for (const name of NAMES) {
    if (typeof tapable[name] !== 'function') throw new Error(`the installed tapable has no ${name} (bkt needs tapable 2.x)`);
  }
  return Object.fromEntries(NAMES.map((name) => [name, tapable[name]])) as unknown as HookClasses;
}

/**
 * The classes as a CommonJS bundle of core has them (a frontend bundled with
 * esbuild, say): there is no `import.meta.url`, and literal `require` calls
 * are what lets the bundler include tapable's files.
 */
function bundledHookClasses(): HookClasses {
  return {
    AsyncParallelHook: require('tapable/lib/AsyncParallelHook.js'),
    AsyncSeriesBailHook: require('tapable/lib/AsyncSeriesBailHook.js'),
    AsyncSeriesHook: require('tapable/lib/AsyncSeriesHook.js'),
    AsyncSeriesWaterfallHook: require('tapable/lib/AsyncSeriesWaterfallHook.js'),
    SyncHook: require('tapable/lib/SyncHook.js'),
  } as HookClasses;
}

export const hookClasses: HookClasses = import.meta.url ? loadHookClasses(createRequire(import.meta.url)) : bundledHookClasses();
