import { BktError } from './errors.js';
import type {
  AttestationProducer,
  CacheBackend,
  Exporter,
  Frontend,
  OpExecutor,
  Source,
} from './types.js';

/**
 * A lookup table by key. Registering a key twice is an error that names both
 * owners (plugins), so a conflict between two plugins is found at start-up.
 */
export class Registry<T> {
  readonly #entries = new Map<string, { value: T; owner: string }>();

  constructor(readonly kind: string) {}

  register(key: string, value: T, owner: string): void {
    const existing = this.#entries.get(key);
    if (existing) {
      throw new BktError(
        'DUPLICATE_KEY',
        `${this.kind} "${key}" is registered twice: by ${existing.owner} and by ${owner}`,
        { key, owners: [existing.owner, owner] },
      );
    }
    this.#entries.set(key, { value, owner });
  }

  get(key: string): T | undefined {
    return this.#entries.get(key)?.value;
  }

  /** Like `get`, but a missing key is a `NOT_FOUND` error listing the known keys. */
  require(key: string): T {
    const entry = this.#entries.get(key);
    if (!entry) {
      const known = [...this.#entries.keys()].sort().join(', ') || 'none';
      throw new BktError('NOT_FOUND', `unknown ${this.kind} "${key}" (registered: ${known})`, { key });
    }
    return entry.value;
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  owner(key: string): string | undefined {
    return this.#entries.get(key)?.owner;
  }

  keys(): string[] {
    return [...this.#entries.keys()];
  }
}

/** Every registry of a bkt instance. */
export interface Registries {
  /** Sources by scheme (`local`, `docker-image`, `git`, `https`, `oci-layout`). */
  readonly sources: Registry<Source>;
  /** Op executors by op kind (`exec`, `file`, `merge`, `diff`, `build`). */
  readonly opExecutors: Registry<OpExecutor>;
  /** Exporters by type (`local`, `tar`, `image`, `oci`, `docker`). */
  readonly exporters: Registry<Exporter>;
  /** Cache backends by type (`registry`, `local`, `inline`). */
  readonly cacheBackends: Registry<CacheBackend>;
  /** Frontends by name (`dockerfile.v0`, `gateway.v0`). */
  readonly frontends: Registry<Frontend>;
  /** Attestation producers by kind (`provenance`, `sbom`). */
  readonly attestationProducers: Registry<AttestationProducer>;
}

export function createRegistries(): Registries {
  return Object.freeze({
    sources: new Registry<Source>('source'),
    opExecutors: new Registry<OpExecutor>('op executor'),
    exporters: new Registry<Exporter>('exporter'),
    cacheBackends: new Registry<CacheBackend>('cache backend'),
    frontends: new Registry<Frontend>('frontend'),
    attestationProducers: new Registry<AttestationProducer>('attestation producer'),
  });
}
