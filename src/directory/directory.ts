// Owns the directory contract: what an account is and the one auth path every protocol uses.
// Must not contain any backend (LDAP, file) specifics; implementations live beside it.
import type { Credentials } from '../core/types.js';

export interface Account {
  /** Name the backend knows the user by (LDAP loginAttribute, e.g. uid). */
  login: string;
  /** Primary mail address, if known. */
  mail?: string;
  /** Host attribute value (e.g. `backend-a`), or null when the entry has none. */
  host: string | null;
  /** LDAP DN (for logs); absent for the static directory. */
  dn?: string;
}

export type AuthResult = { ok: true; account: Account } | { ok: false };

export interface Directory {
  /**
   * Verify credentials. Wrong password, unknown user and empty password all give { ok: false }.
   * Directory trouble throws ProxyError('DIRECTORY_UNAVAILABLE'), never { ok: false }; a connection this host could not
   * open (out of descriptors or ports) throws LOCAL_RESOURCES.
   */
  authenticate(credentials: Credentials): Promise<AuthResult>;
  /** Find an account by login name or address without a password (routing, `lookup` CLI). */
  lookup(name: string): Promise<Account | null>;
  /** Find the account owning a recipient address (inbound SMTP). */
  lookupRecipient(address: string): Promise<Account | null>;
  /** Drop whatever is cached about one account (route invalidation); directories without a cache leave it out. */
  invalidate?(user: string): number;
  /**
   * Re-read what the directory reads from outside the config (the static users file), for a SIGHUP that leaves the
   * directory section unchanged; on a problem the old data stays and it throws. Absent: nothing to re-read.
   */
  reload?(): Promise<void>;
  close(): Promise<void>;
}
