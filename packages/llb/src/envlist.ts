/**
 * An immutable environment in Go's `EnvList` order: setting a key again moves
 * it to the end, deleting removes it.
 *
 * Persistent and cheap to extend: `set` and `delete` return a new list in
 * O(1) amortized time and leave the old one readable, `get` takes
 * O(log k) (k: how often that key was set), `entries` O(n log n). A state
 * chain of n `ENV` instructions therefore costs O(n), where copying the list
 * at every step would cost O(n²).
 *
 * How: the lists of one linear history share a store. Each key keeps every
 * value it took, stamped with the version (a counter of the history) that set
 * it; a list reads, for each key, the newest stamp not after its own version.
 * Extending a list that is not its store's newest version (a branch: two
 * stages built on one base) first copies what that list sees into a new store.
 */
export class EnvList {
  /** The list without variables. */
  static readonly EMPTY: EnvList = new EnvList({ values: new Map(), newest: 0 }, 0, 0);

  #entries: readonly (readonly [string, string])[] | undefined;

  private constructor(
    private readonly store: EnvStore,
    private readonly version: number,
    /** Number of variables. */
    readonly size: number,
  ) {}

  /** A list of `entries` in order; a repeated key keeps its last value, at its last position. */
  static fromEntries(entries: Iterable<readonly [string, string]>): EnvList {
    let list = EnvList.EMPTY;
    for (const [k, v] of entries) list = list.set(k, v);
    return list;
  }

  get(key: string): string | undefined {
    const stamps = this.store.values.get(key);
    return stamps === undefined ? undefined : visibleAt(stamps, this.version)?.value;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** This list with `key` set to `value`, moved to the end. */
  set(key: string, value: string): EnvList {
    const size = this.has(key) ? this.size : this.size + 1;
    return this.#extend(key, value, size);
  }

  /** This list without `key` (this list itself when `key` is not set). */
  delete(key: string): EnvList {
    if (!this.has(key)) return this;
    return this.#extend(key, undefined, this.size - 1);
  }

  /** The variables in order. */
  entries(): readonly (readonly [string, string])[] {
    if (this.#entries) return this.#entries;
    const visible: { version: number; key: string; value: string }[] = [];
    for (const [key, stamps] of this.store.values) {
      const stamp = visibleAt(stamps, this.version);
      if (stamp?.value !== undefined) visible.push({ version: stamp.version, key, value: stamp.value });
    }
    visible.sort((a, b) => a.version - b.version);
    this.#entries = visible.map((e) => [e.key, e.value] as const);
    return this.#entries;
  }

  #extend(key: string, value: string | undefined, size: number): EnvList {
    // The empty list (version 0) starts a new store, so unrelated lists never share one;
    // a branch gets a store of its own, holding what this list sees.
    const store = this.version === 0 ? { values: new Map(), newest: 0 } : this.store.newest === this.version ? this.store : copyVisible(this);
    const version = store.newest + 1;
    store.newest = version;
    const stamps = store.values.get(key);
    if (stamps) stamps.push({ version, value });
    else store.values.set(key, [{ version, value }]);
    return new EnvList(store, version, size);
  }
}

/** The shared history of one line of lists: each key's values (undefined: deleted), oldest first. */
interface EnvStore {
  readonly values: Map<string, Stamp[]>;
  /** The version of the newest list of the store: only it may be extended in place. */
  newest: number;
}

interface Stamp {
  readonly version: number;
  readonly value: string | undefined;
}

/** The newest stamp set at or before `version` (stamps are in version order). */
function visibleAt(stamps: readonly Stamp[], version: number): Stamp | undefined {
  const last = stamps[stamps.length - 1];
  if (last.version <= version) return last;
  let lo = 0;
  let hi = stamps.length - 1;
  let found: Stamp | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (stamps[mid].version <= version) {
      found = stamps[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/** A new store holding what `list` sees, in its order, ending at `list`'s own version. */
function copyVisible(list: EnvList): EnvStore {
  const values = new Map<string, Stamp[]>();
  let version = 0;
  for (const [key, value] of list.entries()) values.set(key, [{ version: ++version, value }]);
  return { values, newest: version };
}
