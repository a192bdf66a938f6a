// Owns the envelope rules every SMTP front-end applies before a service sees MAIL/RCPT: ASCII address form and parameters.
// Must not do I/O or know directories and backends; it returns the address to use or the reply that refuses the command.
import { domainToASCII } from 'node:url';
import type { SMTPServerAddress } from 'smtp-server';
import type { ClientReply } from './replies.js';

/**
 * MAIL parameters the front-ends advertise or accept: RFC 1870 SIZE, RFC 6152 BODY (smtp-server checks both), and
 * RFC 4954 §5 AUTH= (which a client may send whenever AUTH was offered; it is not passed on). RCPT takes none.
 */
const MAIL_PARAMETERS = new Set(['SIZE', 'BODY', 'AUTH']);

const NON_ASCII = /[^\x00-\x7f]/;

export const ENVELOPE_REPLY = {
  /** RFC 5321 §4.1.1.11: parameters not recognized or not implemented (DSN, SMTPUTF8, REQUIRETLS … are not offered). */
  unsupportedParameter: (name: string): ClientReply => ({ code: 555, text: `5.5.4 Unsupported parameter ${name.slice(0, 32)}` }),
  /** RFC 6531 §3.5 / RFC 6533 X.6.7: a non-ASCII mailbox without SMTPUTF8 (which is not offered). */
  nonAscii: { code: 553, text: '5.6.7 Non-ASCII addresses are not permitted (SMTPUTF8 is not offered)' },
} as const;

/**
 * The address as the backend and the directory must see it, or the reply refusing it. smtp-server turns an IDNA domain
 * (`user@xn--mnchen-3ya.de`) into Unicode (`user@münchen.de`); passed on like that, Dovecot's LMTP recorded the sender
 * as `<>` and a recipient whose address the directory holds in its ASCII form was answered 550. The domain goes back to
 * its ASCII (A-label) form; a non-ASCII local part needs SMTPUTF8, which is not offered.
 */
export function asciiAddress(address: string): { address: string } | { reply: ClientReply } {
  if (!NON_ASCII.test(address)) return { address };
  const at = address.lastIndexOf('@');
  const local = at < 0 ? address : address.slice(0, at);
  if (at < 0 || NON_ASCII.test(local)) return { reply: ENVELOPE_REPLY.nonAscii };
  const domain = domainToASCII(address.slice(at + 1));
  if (domain === '' || NON_ASCII.test(domain)) return { reply: ENVELOPE_REPLY.nonAscii };
  return { address: `${local}@${domain}` };
}

/** The first parameter of a MAIL (`mail`) or RCPT (`rcpt`) command that is not offered, or undefined. */
export function unsupportedParameter(args: SMTPServerAddress['args'], command: 'mail' | 'rcpt'): string | undefined {
  if (!args) return undefined;
  return Object.keys(args).find((name) => command === 'rcpt' || !MAIL_PARAMETERS.has(name.toUpperCase()));
}

/**
 * Apply both rules to a parsed MAIL/RCPT address: returns the reply refusing the command, or null after putting the
 * ASCII form into `address.address` (smtp-server stores that object in the envelope once the handler accepts it).
 */
export function checkEnvelopeAddress(address: SMTPServerAddress, command: 'mail' | 'rcpt'): ClientReply | null {
  const param = unsupportedParameter(address.args, command);
  if (param !== undefined) return ENVELOPE_REPLY.unsupportedParameter(param);
  const form = asciiAddress(address.address);
  if ('reply' in form) return form.reply;
  address.address = form.address;
  return null;
}
