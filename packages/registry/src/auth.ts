/**
 * Registry authentication: `WWW-Authenticate` challenges, and per-host
 * authorizers for Basic and for the Bearer token flow (docker's token spec and
 * its OAuth2 variant), with tokens cached per credentials and scope set until
 * they expire.
 */
import { createHash } from 'node:crypto';
import { BktError } from '@bkt/core';
import type { Credentials } from './credentials.js';
import { readBody, type HttpResponse, type Transport } from './http.js';

export interface Challenge {
  /** Lowercased: `basic`, `bearer`. */
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` header: one or more challenges, each a scheme
 * followed by comma-separated `key=value` / `key="quoted \" value"` params.
 */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  let i = 0;
  const skipSpace = () => {
    while (i < header.length && /[\s,]/.test(header[i])) i++;
  };
  const token = () => {
    const start = i;
    while (i < header.length && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(header[i])) i++;
    return header.slice(start, i);
  };
  while (i < header.length) {
    skipSpace();
    const scheme = token();
    if (!scheme) break;
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    challenges.push(challenge);
    for (;;) {
      while (i < header.length && /[\s]/.test(header[i])) i++;
      const save = i;
      const key = token();
      while (i < header.length && header[i] === ' ') i++;
      if (!key || header[i] !== '=') {
        i = save; // not a param: the next challenge's scheme
        break;
      }
      i++; // '='
      while (i < header.length && header[i] === ' ') i++;
      let value = '';
      if (header[i] === '"') {
        i++;
        while (i < header.length && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < header.length) i++;
          value += header[i++];
        }
        i++; // closing quote
      } else {
        value = token();
      }
      challenge.params[key.toLowerCase()] = value;
      while (i < header.length && header[i] === ' ') i++;
      if (header[i] === ',') i++;
      else break;
    }
  }
  return challenges;
}

/** The scope strings the token flow asks for (`repository:a/b:pull,push`). */
export type Scope = string;

export function repositoryScope(repository: string, actions: ('pull' | 'push')[]): Scope {
  return `repository:${repository}:${actions.join(',')}`;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

interface TokenEntry {
  token: Promise<CachedToken>;
  /** When the token expires; Infinity while it is being fetched. */
  expiresAt: number;
}

/**
 * The auth state a registry client shares with its views (one per build):
 * what each endpoint challenged with (the server's, the same for everyone),
 * and bearer tokens keyed by the credentials they were obtained with — a
 * token is only ever handed to a view asking with the same credentials
 * (anonymous tokens to every anonymous view). Credentials themselves are
 * never kept here, only a digest of them in the keys.
 */
export class AuthCache {
  readonly #challenges = new Map<string, Challenge>();
  readonly #tokens = new Map<string, TokenEntry>();

  challenge(endpoint: string): Challenge | undefined {
    return this.#challenges.get(endpoint);
  }

  setChallenge(endpoint: string, challenge: Challenge): void {
    this.#challenges.set(endpoint, challenge);
  }

  /** A token for `key` that has not expired, or undefined. */
  token(key: string): Promise<CachedToken> | undefined {
    const entry = this.#tokens.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.#tokens.delete(key);
      return undefined;
    }
    return entry.token;
  }

  /** Keeps `token` under `key` until it expires (dropped at once when fetching it fails); expired tokens are swept. */
  setToken(key: string, token: Promise<CachedToken>): void {
    const now = Date.now();
    for (const [k, e] of this.#tokens) if (e.expiresAt <= now) this.#tokens.delete(k);
    const entry: TokenEntry = { token, expiresAt: Infinity };
    this.#tokens.set(key, entry);
    token.then(
      (t) => (entry.expiresAt = t.expiresAt),
      () => {
        if (this.#tokens.get(key) === entry) this.#tokens.delete(key);
      },
    );
  }

  /** Drops the token under `key` if it is still `token` (another caller may have replaced it meanwhile). */
  dropToken(key: string, token?: Promise<CachedToken>): void {
    const entry = this.#tokens.get(key);
    if (entry && (token === undefined || entry.token === token)) this.#tokens.delete(key);
  }
}

/**
 * What keys a token: a digest of the credentials it was obtained with, or
 * `anonymous`. Two lookups answering the same credentials get the same key.
 */
export function credentialsKey(creds: Credentials | undefined): string {
  if (!creds) return 'anonymous';
  const parts = 'identityToken' in creds ? ['identity-token', creds.identityToken] : ['password', creds.username, creds.password];
  return `sha256:${createHash('sha256').update(JSON.stringify(parts)).digest('hex')}`;
}

/**
 * Authorizes requests to one registry endpoint with one set of credentials
 * (a view's: one build's). The endpoint's challenge and the tokens live in
 * the shared `AuthCache`; the credentials are looked up here, once.
 */
export class HostAuthorizer {
  #credentials: Promise<Credentials | undefined> | undefined;

  constructor(
    readonly registry: string,
    /** Names the endpoint in the shared cache (its base URL and TLS setting). */
    private readonly endpoint: string,
    private readonly transport: Transport,
    private readonly lookupCredentials: () => Promise<Credentials | undefined>,
    private readonly insecure: boolean,
    private readonly cache: AuthCache,
  ) {}

  /** The host's credentials, looked up once (a credential helper runs once per view and host). */
  private credentials(): Promise<Credentials | undefined> {
    if (!this.#credentials) {
      this.#credentials = this.lookupCredentials();
      this.#credentials.catch(() => (this.#credentials = undefined));
    }
    return this.#credentials;
  }

  /** The `Authorization` header for a request needing `scopes`, or undefined before any challenge. */
  async authorization(scopes: Scope[]): Promise<string | undefined> {
    const challenge = this.cache.challenge(this.endpoint);
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') {
      const creds = await this.credentials();
      if (!creds || !('username' in creds)) return undefined;
      return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    }
    if (challenge.scheme === 'bearer') return `Bearer ${(await this.#token(challenge, scopes)).token}`;
    return undefined;
  }

  /**
   * Records the challenge of a 401 response. Returns true when a retry with a
   * fresh `authorization()` can help: the first challenge (nothing was sent),
   * or a bearer token that may have expired or lacked a scope (it is dropped).
   * A refused Basic authorization would be refused again: false.
   */
  async onUnauthorized(res: HttpResponse, scopes: Scope[], hadAuthorization: boolean): Promise<boolean> {
    const header = res.headers['www-authenticate'];
    const challenges = parseWwwAuthenticate(Array.isArray(header) ? header.join(', ') : (header ?? ''));
    const challenge = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
    if (!challenge) return false;
    this.cache.setChallenge(this.endpoint, challenge);
    if (!hadAuthorization) return true;
    if (challenge.scheme !== 'bearer') return false;
    this.cache.dropToken(await this.#cacheKey(challenge, scopes));
    return true;
  }

  /** Whether credentials exist for this host (for error messages). */
  async hasCredentials(): Promise<boolean> {
    return (await this.credentials()) !== undefined;
  }

  async #cacheKey(challenge: Challenge, scopes: Scope[]): Promise<string> {
    const creds = credentialsKey(await this.credentials());
    return `${creds} ${this.endpoint} ${challenge.params.realm} ${challenge.params.service ?? ''} ${[...scopes].sort().join(' ')}`;
  }

  async #token(challenge: Challenge, scopes: Scope[]): Promise<CachedToken> {
    const key = await this.#cacheKey(challenge, scopes);
    const cached = this.cache.token(key);
    if (cached) {
      const t = await cached;
      if (t.expiresAt > Date.now()) return t;
      this.cache.dropToken(key, cached);
      return this.#token(challenge, scopes);
    }
    const pending = this.#fetchToken(challenge, scopes);
    this.cache.setToken(key, pending);
    return pending;
  }

  async #fetchToken(challenge: Challenge, scopes: Scope[]): Promise<CachedToken> {
    const realm = challenge.params.realm;
    if (!realm) throw new BktError('PERMISSION_DENIED', `registry ${this.registry} sent a bearer challenge without a realm`);
    const url = new URL(realm);
    const service = challenge.params.service;
    const creds = await this.credentials();
    const allScopes = [...scopes];
    if (challenge.params.scope && !allScopes.includes(challenge.params.scope)) allScopes.push(challenge.params.scope);

    let res: HttpResponse;
    if (creds && 'identityToken' in creds) {
      // OAuth2 refresh-token grant, as docker does with an identity token.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'bkt' });
      if (service) form.set('service', service);
      if (allScopes.length) form.set('scope', allScopes.join(' '));
      res = await this.transport.send({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: Buffer.from(form.toString()),
        insecure: this.insecure,
      });
    } else {
      if (service) url.searchParams.set('service', service);
      for (const s of allScopes) url.searchParams.append('scope', s);
      const headers: Record<string, string> = {};
      if (creds) headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
      res = await this.transport.send({ method: 'GET', url, headers, insecure: this.insecure });
    }
    const body = await readBody(res, 1024 * 1024);
    if (res.status !== 200) {
      throw new BktError(
        'PERMISSION_DENIED',
        `registry ${this.registry}: token server ${url.origin}${url.pathname} refused ${allScopes.join(' ') || 'access'}` +
          ` (HTTP ${res.status}${creds ? '' : `, no credentials for ${this.registry}`})`,
      );
    }
    const json = JSON.parse(body.toString('utf8')) as { token?: string; access_token?: string; expires_in?: number };
    const token = json.token ?? json.access_token;
    if (!token) throw new BktError('PERMISSION_DENIED', `registry ${this.registry}: token server answered without a token`);
    // Refresh a little early; the spec's default lifetime is 60 s.
    const lifetime = Math.max((json.expires_in ?? 60) - 10, 5) * 1000;
    return { token, expiresAt: Date.now() + lifetime };
  }
}
