// Owns schema-default LDAP configs for directory tests.
// Must not hold assertions.
import type { LdapConfig } from '../../../src/config/schema.js';

/** An LdapConfig with the schema's defaults, for tests that build a directory without a whole config file. */
export function ldapSchemaDefaults(overrides: Record<string, unknown>): LdapConfig {
  return {
    baseDN: 'dc=example,dc=test',
    bindDN: '',
    filter: '(&(objectClass=inetLocalMailRecipient)(|(uid=%u)(mail=%u)))',
    recipientFilter: '(&(objectClass=inetLocalMailRecipient)(|(mail=%u)(mailLocalAddress=%u)))',
    hostAttribute: 'mailHost',
    loginAttribute: 'uid',
    timeoutMs: 5000,
    connectTimeoutMs: 3000,
    tlsVerify: true,
    failbackAfterMs: 30_000,
    hedgeDelayMs: 200,
    probeIntervalMs: 2000,
    probeDownIntervalMs: 500,
    pool: { size: 4, idleTimeoutMs: 60_000, onServerFailure: 'close-all' },
    ...overrides,
  } as LdapConfig;
}
