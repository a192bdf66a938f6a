// Owns client-facing TLS material: a SecureContext per certificate, SNI choice (exact, wildcard, default), ALPN refusal (ALPACA).
// Must not read sockets or decide when to upgrade (sessions and SMTP frontends do); file checks live in check.ts.
import { createSecureContext, type SecureContext, type TlsOptions } from 'node:tls';
import type { Config } from '../config/schema.js';
import { ProxyError } from '../errors.js';
import { checkTlsFiles, type CertificateFiles } from './check.js';

/**
 * ALPN protocol id each listener protocol must see when a client offers ALPN (IANA "TLS ALPN Protocol IDs";
 * RFC 7301 §3.2: a server that supports none of the offered protocols answers with the no_application_protocol alert).
 */
export const ALPN_IDS: Readonly<Record<string, string>> = {
  imap: 'imap', pop3: 'pop3', submission: 'smtp', smtp: 'smtp', managesieve: 'managesieve', sieve: 'managesieve', lmtp: 'lmtp',
};

/** Lower-case, without a trailing dot (`Mail.Example.COM.` → `mail.example.com`). */
export function normalizeServerName(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}

/**
 * Index of the entry answering for `servername`: an exact name first, then a wildcard `*.example.com`, which covers
 * exactly one more label (`a.example.com`, not `example.com` nor `b.a.example.com`, as RFC 6125 §6.4.3). -1: default.
 */
export function selectCertificate(entries: ReadonlyArray<{ names: readonly string[] }>, servername: string | undefined): number {
  if (!servername) return -1;
  const name = normalizeServerName(servername);
  const exact = entries.findIndex((e) => e.names.some((n) => normalizeServerName(n) === name));
  if (exact !== -1) return exact;
  const dot = name.indexOf('.');
  if (dot <= 0) return -1;
  const parent = name.slice(dot + 1);
  return entries.findIndex((e) => e.names.some((n) => { const w = normalizeServerName(n); return w.startsWith('*.') && w.slice(2) === parent; }));
}

/** What a refused ALPN offer looked like (for the session's log line). */
export interface AlpnRefusal { offered: string[]; wanted: string }

/** Options for one server-side TLSSocket handshake. */
export type ServerTlsOptions = Pick<TlsOptions, 'secureContext' | 'SNICallback' | 'ALPNCallback'>;

export interface TlsMaterial {
  /** Default certificate and key (PEM), for smtp-server's own STARTTLS. */
  key: Buffer;
  cert: Buffer;
  context: SecureContext;
  /** Every loaded pair, default first (the expiry metric reads notAfter). */
  certificates: CertificateFiles[];
  /** Problems-free but worth logging: certificates close to expiry or not yet valid. */
  warnings: string[];
  SNICallback: NonNullable<TlsOptions['SNICallback']>;
  /**
   * Handshake options for a listener of `protocol`: SNI and, unless tls.strictAlpn is off, an ALPN check that refuses a
   * client offering ALPN without this protocol's id; `onRefused` hears about it. A client offering no ALPN is accepted.
   */
  serverOptions(protocol: string, onRefused?: (r: AlpnRefusal) => void): ServerTlsOptions;
}

/**
 * Load and check every certificate of `config` (default and SNI) and build their contexts. Any problem (missing file,
 * bad PEM, key mismatch, expired) throws CONFIG_INVALID listing all of them; nothing half-loads.
 */
export function loadTlsMaterial(config: Config, now = Date.now()): TlsMaterial | undefined {
  const tls = config.tls;
  if (!tls) return undefined;
  const report = checkTlsFiles(config, now);
  const contexts: SecureContext[] = [];
  for (const pair of report.pairs) {
    try {
      contexts.push(createSecureContext({ key: pair.privateKey, cert: pair.cert, minVersion: tls.minVersion, ...(tls.ciphers ? { ciphers: tls.ciphers } : {}) }));
    } catch (e) {
      report.problems.push(`${pair.key}: ${(e as Error).message} ${pair.certFile}`);
    }
  }
  if (report.problems.length) throw new ProxyError('CONFIG_INVALID', `TLS files: ${report.problems.join('; ')}`);
  const [def, ...sni] = report.pairs;
  const defContext = contexts[0]!;
  const sniContexts = contexts.slice(1);
  const SNICallback: TlsMaterial['SNICallback'] = (servername, cb) => {
    const i = selectCertificate(sni, servername);
    cb(null, i === -1 ? defContext : sniContexts[i]);
  };
  return {
    key: def!.privateKey,
    cert: def!.cert,
    context: defContext,
    certificates: report.pairs,
    warnings: report.warnings,
    SNICallback,
    serverOptions(protocol, onRefused) {
      const wanted = ALPN_IDS[protocol];
      if (!tls.strictAlpn || !wanted) return { secureContext: defContext, SNICallback };
      return {
        secureContext: defContext,
        SNICallback,
        // Only called when the client sent an ALPN extension; undefined makes OpenSSL send no_application_protocol.
        ALPNCallback: ({ protocols }) => {
          if (protocols.includes(wanted)) return wanted;
          onRefused?.({ offered: protocols, wanted });
          return undefined;
        },
      };
    },
  };
}

const fallback = new WeakMap<Buffer, SecureContext>();

/**
 * Handshake options from material that may be only `{ key, cert }` (tests that build an SMTP service by hand):
 * full material gives SNI and ALPN; bare PEM gets one cached context.
 */
export function serverTlsOptions(material: { key: Buffer; cert: Buffer; serverOptions?: TlsMaterial['serverOptions'] }, protocol: string, onRefused?: (r: AlpnRefusal) => void): ServerTlsOptions {
  if (material.serverOptions) return material.serverOptions(protocol, onRefused);
  let ctx = fallback.get(material.cert);
  if (!ctx) { ctx = createSecureContext({ key: material.key, cert: material.cert, minVersion: 'TLSv1.2' }); fallback.set(material.cert, ctx); }
  return { secureContext: ctx };
}
