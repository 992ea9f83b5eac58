import { describe, expect, it } from 'vitest';
import { parseEntitlements } from './entitlements.js';

describe('parseEntitlements', () => {
  it('takes repeated and comma-separated values once each', () => {
    expect(parseEntitlements([])).toEqual([]);
    expect(parseEntitlements(['network.host', 'security.insecure,network.host', ' '])).toEqual(['network.host', 'security.insecure']);
  });

  it('refuses an unknown entitlement, naming it and the known ones', () => {
    expect(() => parseEntitlements(['network.host,device'])).toThrow('--allow device: unknown entitlement (network.host, security.insecure)');
  });
});
