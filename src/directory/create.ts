// Owns choosing and assembling the configured Directory (LDAP or static file, optionally behind the cache).
// Must not contain lookup logic itself; it only wires implementations from config.
import type { Config } from '../config/schema.js';
import { ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { CachedDirectory } from './cached.js';
import type { Directory } from './directory.js';
import { LdapDirectory } from './ldap.js';
import { StaticDirectory } from './static.js';
import { OAuthDirectory } from './oauth.js';
import { createTokenValidator } from '../auth/token-validator.js';

export function createDirectory(config: Config, logger: Logger, clock: () => number = Date.now): Directory {
  const d = config.directory;
  let inner: Directory;
  if (d.type === 'ldap') {
    if (!d.ldap) throw new ProxyError('CONFIG_INVALID', 'directory.type ldap needs directory.ldap');
    inner = new LdapDirectory(d.ldap, logger, clock).start();
  } else {
    if (!d.static) throw new ProxyError('CONFIG_INVALID', 'directory.type static needs directory.static');
    inner = new StaticDirectory(d.static.file, logger.child({ component: 'static-directory' }));
  }
  const cached = d.cache.enabled ? new CachedDirectory(inner, d.cache, { now: clock, logger: logger.child({ component: 'directory-cache' }) }) : inner;
  if (!config.oauth) return cached;
  const log = logger.child({ component: 'oauth' });
  return new OAuthDirectory(cached, createTokenValidator(config.oauth, { logger: log, now: clock }), log);
}
