// Owns the Received: trace header the inbound service prepends (RFC 5321 §4.4, RFC 5322 §3.6.7, RFC 3848 protocol names).
// Must not read clocks or sockets itself: every value, the date included, is passed in.
import { plainAddress } from '../../core/proxy-header.js';

export interface ReceivedInfo {
  /** What the client said in HELO/EHLO. */
  helo: string;
  /** Client IP address (no brackets). */
  clientAddress: string;
  /** Reverse-resolved name of the client address, if any. */
  clientHostname?: string;
  /** This proxy's host name. */
  byHostname: string;
  /** RFC 3848: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, LMTP… */
  protocol: string;
  /** Session or queue id. */
  id: string;
  /** Added only when the transaction has exactly one recipient (RFC 5321 §4.4 "for" is optional; several would leak Bcc). */
  recipient?: string;
  date: Date;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number): string => String(n).padStart(2, '0');

/** RFC 5322 §3.3 date-time in UTC, e.g. "Tue, 3 Feb 2026 09:04:05 +0000". */
export function formatRfc5322Date(d: Date): string {
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
}

/** Keep a client-supplied name harmless inside a header: domain/literal characters only. */
export function safeToken(value: string, max = 255): string {
  const cleaned = value.replace(/[^A-Za-z0-9._:\-[\]]/g, '?').slice(0, max);
  return cleaned || 'unknown';
}

/** RFC 5321 §4.1.3 address literal: [192.0.2.1] or [IPv6:2001:db8::1]. */
export function addressLiteral(ip: string): string {
  const bare = plainAddress(ip);
  return bare.includes(':') ? `[IPv6:${safeToken(bare)}]` : `[${safeToken(bare)}]`;
}

/** Only a plausible mailbox goes into the "for" clause. */
function safeMailbox(addr: string): string | null {
  return /^[^\s<>()\\";,\x00-\x1f\x7f]{1,254}@[A-Za-z0-9.\-[\]:]{1,255}$/.test(addr) ? addr : null;
}

/**
 * The complete header field including its CRLF, folded so no line exceeds 78 characters in
 * the common case (RFC 5322 §2.1.1). Example:
 *   Received: from mx.example.org (mx.example.org [192.0.2.1])
 *   \tby proxy.example.net with ESMTPS id 1a2b3c
 *   \tfor <alice@example.test>; Tue, 3 Feb 2026 09:04:05 +0000
 */
export function formatReceived(info: ReceivedInfo): string {
  const literal = addressLiteral(info.clientAddress);
  const tcpInfo = info.clientHostname && !info.clientHostname.startsWith('[') ? `${safeToken(info.clientHostname)} ${literal}` : literal;
  const rcpt = info.recipient ? safeMailbox(info.recipient) : null;
  const by = `\tby ${safeToken(info.byHostname)} with ${safeToken(info.protocol, 16)} id ${safeToken(info.id, 64)}`;
  const date = formatRfc5322Date(info.date);
  const lines = [`Received: from ${safeToken(info.helo)} (${tcpInfo})`, rcpt ? by : `${by};`, rcpt ? `\tfor <${rcpt}>; ${date}` : `\t${date}`];
  return `${lines.join('\r\n')}\r\n`;
}
