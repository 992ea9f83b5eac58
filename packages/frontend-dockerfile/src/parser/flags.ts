import { LocalParseError } from './errors.js';
import { suggest } from './suggest.js';

/**
 * The `--name=value` flags of one instruction (BuildKit's BFlags). Declare the
 * flags an instruction accepts, then `parse()` the words the raw parser found;
 * unknown, duplicate and malformed flags are errors naming the flag.
 */
type FlagKind = 'bool' | 'string' | 'strings';

interface FlagState {
  kind: FlagKind;
  value: string;
  values: string[];
  used: boolean;
}

export class InstructionFlags {
  private readonly flags = new Map<string, FlagState>();
  private readonly used = new Set<string>();

  constructor(private readonly args: readonly string[]) {}

  bool(name: string, def = false): void {
    this.add(name, 'bool', def ? 'true' : 'false');
  }
  string(name: string, def = ''): void {
    this.add(name, 'string', def);
  }
  strings(name: string): void {
    this.add(name, 'strings', '');
  }

  private add(name: string, kind: FlagKind, value: string): void {
    this.flags.set(name, { kind, value, values: [], used: false });
  }

  /** Reads the words. Stops at a bare `--`. */
  parse(): void {
    for (const a of this.args) {
      if (a === '--') return;
      if (!a.startsWith('--')) throw new LocalParseError(`arg should start with -- : ${a}`, a);
      const eq = a.indexOf('=');
      const flagName = eq < 0 ? a : a.slice(0, eq);
      const value = eq < 0 ? '' : a.slice(eq + 1);
      const hasValue = eq >= 0;
      const name = flagName.slice(2);
      const flag = this.flags.get(name);
      if (!flag) {
        const hint = suggest(name, [...this.flags.keys()], true);
        throw new LocalParseError(`unknown flag: ${flagName}${hint ? ` (did you mean ${hint}?)` : ''}`, flagName);
      }
      if (this.used.has(name) && flag.kind !== 'strings') throw new LocalParseError(`duplicate flag specified: ${flagName}`, flagName);
      this.used.add(name);
      flag.used = true;
      switch (flag.kind) {
        case 'bool': {
          if (hasValue && value === '') throw new LocalParseError(`missing a value on flag: ${flagName}`, flagName);
          const v = value.toLowerCase();
          if (v === 'true' || v === '') flag.value = 'true';
          else if (v === 'false') flag.value = 'false';
          else throw new LocalParseError(`expecting boolean value for flag ${flagName}, not: ${value}`, flagName);
          break;
        }
        case 'string':
          if (!hasValue) throw new LocalParseError(`missing a value on flag: ${flagName}`, flagName);
          flag.value = value;
          break;
        case 'strings':
          if (!hasValue) throw new LocalParseError(`missing a value on flag: ${flagName}`, flagName);
          flag.values.push(value);
          break;
      }
    }
  }

  getString(name: string): string {
    return this.flags.get(name)?.value ?? '';
  }
  getBool(name: string): boolean {
    return this.flags.get(name)?.value === 'true';
  }
  getStrings(name: string): string[] {
    return [...(this.flags.get(name)?.values ?? [])];
  }
  isUsed(name: string): boolean {
    return this.used.has(name);
  }
  usedFlags(): string[] {
    return [...this.used];
  }
}
