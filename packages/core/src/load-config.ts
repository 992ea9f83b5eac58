import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { BktError } from './errors.js';
import type { BktConfig } from './config.js';
import { loadCachedConfig, rememberCompiledConfig } from './config-cache.js';
import { createProjectLoader, jitiEntry, runningCoreEntry } from './jiti.js';

/** The config file names looked for in a project directory, first match wins. */
export const CONFIG_FILE_NAMES = [
  'bkt.config.ts',
  'bkt.config.mts',
  'bkt.config.js',
  'bkt.config.mjs',
  'bkt.config.json',
] as const;

/** The first `bkt.config.*` of `projectDir` (in `CONFIG_FILE_NAMES` order), or undefined. */
export function findConfigFile(projectDir: string): string | undefined {
  for (const name of CONFIG_FILE_NAMES) {
    const file = path.join(projectDir, name);
    if (existsSync(file)) return file;
  }
  return undefined;
}

export interface LoadConfigOptions {
  /** A config file to load instead of looking for one (relative to `projectDir`). */
  file?: string;
}

/**
 * Loads a project's config: `opts.file`, or the first `bkt.config.{ts,mts,js,mjs,json}`
 * of `projectDir`. TypeScript loads with no build step. Returns the default
 * export (or `module.exports`). Every failure is a `BktError('CONFIG')` whose
 * message names the file, and `file:line:column` for syntax errors.
 */
export async function loadConfig(projectDir: string, opts: LoadConfigOptions = {}): Promise<BktConfig> {
  const dir = path.resolve(projectDir);
  let file: string;
  if (opts.file !== undefined) {
    file = path.resolve(dir, opts.file);
    if (!existsSync(file)) throw new BktError('CONFIG', `config file ${file} does not exist`, { file });
  } else {
    const found = findConfigFile(dir);
    if (!found) {
      throw new BktError('CONFIG', `no config file in ${dir} (looked for ${CONFIG_FILE_NAMES.join(', ')})`, {
        file: dir,
      });
    }
    file = found;
  }
  const config = file.endsWith('.json') ? loadJson(file) : await loadModule(file, dir);
  return validateConfig(config, file);
}

function loadJson(file: string): unknown {
  const text = readFileSync(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const pos = /at position (\d+)/.exec(message);
    if (pos) {
      const { line, column } = lineColumnAt(text, Number(pos[1]));
      throw new BktError('CONFIG', `${file}:${line}:${column}: ${message.replace(/ in JSON at position \d+.*$/, '')}`, {
        file,
        line,
        column,
      });
    }
    throw new BktError('CONFIG', `${file}: ${message}`, { file }, { cause: err });
  }
}

async function loadModule(file: string, projectDir: string): Promise<unknown> {
  const core = runningCoreEntry();
  let mod: unknown;
  try {
    // A TypeScript config jiti compiled before loads from that compile, without jiti (see config-cache.ts).
    mod = (await loadCachedConfig(file, core))?.exports;
  } catch (err) {
    throw configLoadError(file, err);
  }
  if (mod === undefined) {
    const loader = await createProjectLoader(projectDir);
    try {
      mod = await loader.import(file);
    } catch (err) {
      throw configLoadError(file, err);
    }
    rememberCompiledConfig(file, loader, core, jitiEntry());
  }
  if (mod !== null && typeof mod === 'object' && 'default' in mod) return (mod as { default: unknown }).default;
  return mod;
}

/** Turns a loader error into a `CONFIG` error located at `file:line:column` where possible. */
function configLoadError(file: string, err: unknown): BktError {
  if (err instanceof BktError) return err;
  const e = err as Error;
  const message = String(e?.message ?? err);
  // jiti's parse errors read "ParseError: <what>\n <file>:<line>:<column0>" (babel's 0-based column).
  const parse = /^(?:ParseError: )?(.*?)\s*\n\s*(\/\S+?):(\d+):(\d+)\s*$/s.exec(message);
  if (parse) {
    const [, what, where, line, column0] = parse;
    const loc = { file: where, line: Number(line), column: Number(column0) + 1 };
    return new BktError('CONFIG', `${loc.file}:${loc.line}:${loc.column}: syntax error: ${what}`, loc, { cause: err });
  }
  // A runtime error: point at the first stack frame outside node_modules and the loader.
  const frame = (e?.stack ?? '')
    .split('\n')
    .map((l) => /\(?((?:file:\/\/)?\/[^():]+):(\d+):(\d+)\)?$/.exec(l.trim()))
    .find((m) => m && !m[1].includes('/node_modules/'));
  if (frame) {
    const loc = { file: frame[1].replace(/^file:\/\//, ''), line: Number(frame[2]), column: Number(frame[3]) };
    return new BktError('CONFIG', `${loc.file}:${loc.line}:${loc.column}: loading ${file} failed: ${message}`, loc, {
      cause: err,
    });
  }
  return new BktError('CONFIG', `loading ${file} failed: ${message}`, { file }, { cause: err });
}

function lineColumnAt(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - (before.lastIndexOf('\n') + 1) + 1;
  return { line, column };
}

function validateConfig(config: unknown, file: string): BktConfig {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new BktError(
      'CONFIG',
      `${file}: the default export must be a config object (export default defineConfig({ … })), got ${describeValue(config)}`,
      { file },
    );
  }
  const c = config as Record<string, unknown>;
  if (c.plugins !== undefined && !Array.isArray(c.plugins)) {
    throw new BktError('CONFIG', `${file}: "plugins" must be an array, got ${describeValue(c.plugins)}`, {
      file,
      attribute: 'plugins',
    });
  }
  if (c.targets !== undefined && (c.targets === null || typeof c.targets !== 'object' || Array.isArray(c.targets))) {
    throw new BktError('CONFIG', `${file}: "targets" must be an object of named targets, got ${describeValue(c.targets)}`, {
      file,
      attribute: 'targets',
    });
  }
  if (c.defaultPreset !== undefined && typeof c.defaultPreset !== 'boolean') {
    throw new BktError('CONFIG', `${file}: "defaultPreset" must be a boolean, got ${describeValue(c.defaultPreset)}`, {
      file,
      attribute: 'defaultPreset',
    });
  }
  return config as BktConfig;
}

/** A short description of a value for error messages. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}
