// Owns what the SMTP services answer their clients: fixed replies, backend replies passed on, and the verdict after DATA.
// Must not do I/O; callers hand in backend replies and get back one client reply (code + text with its enhanced code).
import { CATALOGUE, type ErrorCode } from '../../errors.js';
import { replyText, type BackendReply } from './reply-parser.js';

export interface ClientReply {
  code: number;
  /** Text after the code, starting with the RFC 3463 enhanced status code. */
  text: string;
}

export const REPLY = {
  /** RFC 4954 §6: MAIL before AUTH on a submission port. */
  authRequired: { code: 530, text: '5.7.0 Authentication required' },
  /** RFC 3463: 4.3.0 other or undefined mail system status. */
  backendTemp: { code: 451, text: '4.3.0 Temporary failure, please try again later' },
  directoryTemp: { code: 451, text: '4.3.0 Temporary lookup failure, please try again later' },
  /** RFC 3463 5.1.1 bad destination mailbox address: answered at RCPT, so no backscatter. */
  unknownRecipient: { code: 550, text: '5.1.1 No such user here' },
  /** RFC 5321 §4.5.3.1.10: 452 makes the client send the remaining recipients in a later transaction. */
  otherBackend: { code: 452, text: '4.5.3 Too many recipients for this transaction, send the rest separately' },
  tooLarge: { code: 552, text: '5.3.4 Message size exceeds fixed maximum message size' },
  tooManyErrors: { code: 421, text: '4.7.0 Too many errors, closing connection' },
  noValidRecipients: { code: 554, text: '5.5.1 No valid recipients' },
  /** RFC 5321 §4.2.2 553 (mailbox syntax incorrect) with RFC 3463 X.1.7 (bad sender's mailbox address syntax). */
  badSenderSyntax: { code: 553, text: '5.1.7 Sender address is not valid UTF-8' },
} as const satisfies Record<string, ClientReply>;

/** A catalogue entry's SMTP reply split into code and text. */
export function catalogueReply(code: ErrorCode): ClientReply {
  const m = /^(\d{3}) (.*)$/.exec(CATALOGUE[code].smtp);
  return m ? { code: Number(m[1]), text: m[2]! } : { code: 451, text: '4.3.0 Temporary failure' };
}

export interface SmtpReplyError extends Error {
  responseCode: number;
}

/** The error smtp-server callbacks take to send `reply` (its text becomes the reply text as is). */
export function replyError(reply: ClientReply): SmtpReplyError {
  const e = new Error(reply.text) as SmtpReplyError;
  e.responseCode = reply.code;
  return e;
}

export const isPositive = (r: BackendReply): boolean => r.code >= 200 && r.code < 300;
export const isTemporary = (r: BackendReply): boolean => r.code >= 400 && r.code < 500;
export const isPermanent = (r: BackendReply): boolean => r.code >= 500 && r.code < 600;

/**
 * A backend's negative reply to MAIL/RCPT/DATA, passed on with its own code and (sanitised) text.
 * 421 is not passed on: it would close the client's connection (RFC 5321 §3.8) for a fault of
 * one backend connection, so it becomes 451 for this command only.
 */
export function forwardReply(reply: BackendReply): ClientReply {
  if (reply.code === 421 || !(isTemporary(reply) || isPermanent(reply))) return REPLY.backendTemp;
  const text = replyText(reply);
  return { code: reply.code, text: text || (isTemporary(reply) ? '4.0.0 Temporary failure' : '5.0.0 Failed') };
}

export type DataOutcome = 'delivered' | 'deferred' | 'rejected';

export interface DataVerdict {
  outcome: DataOutcome;
  reply: ClientReply;
  /** Recipients whose reply was not positive, with the backend's reply, for the log. */
  failures: Array<{ recipient: string; code: number; text: string }>;
}

/**
 * One SMTP answer for a message the backend answered per recipient (LMTP, RFC 2033 §4.2), or
 * once (SMTP: `replies` has one entry and `recipients` may be longer).
 *
 * - every reply positive → 250 (the backend's text when there was one reply);
 * - any temporary failure → 451 for the whole message: the sender retries it, recipients that
 *   already got it get a duplicate, and a duplicate beats a loss;
 * - every reply permanent → the first permanent reply, passed on (the sender bounces);
 * - positive and permanent mixed (no temporary) → 554. Answering 451 instead would make the
 *   sender retry until its queue lifetime ends, delivering a duplicate to the positive
 *   recipients on every retry, and then bounce for all recipients anyway; 554 bounces at once
 *   with the failing recipient named, at the cost of that bounce also covering the recipients
 *   who did get the message. 250 is never right here: it would silently lose the mail of the
 *   permanently failed recipients.
 */
export function dataVerdict(replies: BackendReply[], recipients: string[]): DataVerdict {
  const perRcpt = replies.length === 1 && recipients.length !== 1 ? recipients.map(() => replies[0]!) : replies;
  const failures = perRcpt
    .map((r, i) => ({ r, recipient: recipients[i] ?? '?' }))
    .filter(({ r }) => !isPositive(r))
    .map(({ r, recipient }) => ({ recipient, code: r.code, text: replyText(r, 120) }));
  if (replies.length === 0 || perRcpt.length !== recipients.length) {
    return { outcome: 'deferred', reply: REPLY.backendTemp, failures };
  }
  if (failures.length === 0) {
    const text = replies.length === 1 ? replyText(replies[0]!) : '';
    return { outcome: 'delivered', reply: { code: 250, text: text || '2.0.0 Message accepted for delivery' }, failures };
  }
  if (perRcpt.some((r) => !isPositive(r) && !isPermanent(r))) {
    // Temporary failure, or a reply that is neither success nor failure: let the sender retry.
    return { outcome: 'deferred', reply: { code: 451, text: '4.3.0 Delivery temporarily failed for some recipients, please try again later' }, failures };
  }
  const first = perRcpt.find(isPermanent)!;
  if (failures.length === perRcpt.length) return { outcome: 'rejected', reply: forwardReply(first), failures };
  const f = failures[0]!;
  return { outcome: 'rejected', reply: { code: 554, text: `5.0.0 Delivery failed for ${failures.length} of ${perRcpt.length} recipients (${f.recipient}: ${f.code} ${f.text})` }, failures };
}

/**
 * RFC 2033 §4.2: one client reply per recipient, in RCPT order, from the backend's replies after DATA (one per recipient
 * from an LMTP backend, or one for all from an SMTP backend). A positive reply is passed on as success; anything else
 * (missing replies included) is never a success.
 */
export function perRecipientReplies(replies: BackendReply[], recipients: string[]): ClientReply[] {
  const all = replies.length === 1 && recipients.length !== 1 ? recipients.map(() => replies[0]!) : replies;
  return recipients.map((_r, i) => {
    const r = all[i];
    if (!r) return REPLY.backendTemp;
    return isPositive(r) ? { code: 250, text: replyText(r) || '2.0.0 Delivered' } : forwardReply(r);
  });
}

/** LMTP replies read before the backend failed: recipient i gets reply i (never one reply for all, as from SMTP), the rest `rest`. */
export function partialRecipientReplies(replies: BackendReply[], recipients: string[], rest: ClientReply): ClientReply[] {
  return recipients.map((r, i) => (i < replies.length ? perRecipientReplies([replies[i]!], [r])[0]! : rest));
}
