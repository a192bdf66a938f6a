// Owns relaying one mail transaction's commands to an open backend session: MAIL/RCPT lines, RSET for reuse, and DATA with its verdict.
// Must not open connections, look anything up or answer the client; it returns ClientReply values for the services to send.
import type { SMTPServerAddress, SMTPServerDataStream } from 'smtp-server';
import { ProxyError, isProxyError, toProxyError } from '../../errors.js';
import type { Route } from '../../directory/backends.js';
import type { Account } from '../../directory/directory.js';
import type { SmtpBackendClient } from './backend-client.js';
import type { BackendReply } from './reply-parser.js';
import type { Logger } from '../../log.js';
import type { SessionInfo } from '../sessions.js';
import type { Clock } from '../../core/clock.js';
import type { AdmittedRoute } from '../backend-session.js';
import { smtpMessagesTotal } from '../../metrics.js';
import type { SmtpBackendLoginContext } from './backend-login.js';
import { clientOf, smtpHostname, type ConnState } from './frontend.js';
import { nextHop } from '../loop-guard.js';
import { REPLY, dataVerdict, forwardReply, isPositive, replyError, type ClientReply, type DataVerdict } from './replies.js';

/** A backend session bound to a client connection, reusable across that client's transactions. */
export interface BackendLink {
  client: SmtpBackendClient;
  route: Route;
}

/**
 * Was this recipient already accepted in the transaction? smtp-server keeps one envelope entry per address (compared
 * case-insensitively) and does not count repeats against maxRecipients, so a repeat is answered 250 without being sent
 * on: the backend gets each recipient once (one LMTP reply each, one copy delivered) and repeats cannot get past the limit.
 */
export function isRepeatedRecipient(accepted: readonly string[], address: string): boolean {
  const key = address.toLowerCase();
  return accepted.some((a) => a.toLowerCase() === key);
}

/** Is `link` the same backend endpoint as `route`? */
export function sameEndpoint(link: BackendLink, route: Route): boolean {
  return link.route.host === route.host && link.route.port === route.port && link.route.protocol === route.protocol && link.route.backend === route.backend;
}

/**
 * The backend link for a transaction to `route`: the connection's current one when it goes to the same endpoint and
 * answers RSET, otherwise a new one from `open` (the session registry then shows its backend, and routedFor on a standby).
 */
export async function linkTo(state: { link?: BackendLink | undefined; info: SessionInfo }, route: AdmittedRoute, timeoutMs: number, open: () => Promise<SmtpBackendClient>): Promise<BackendLink> {
  if (state.link && !(sameEndpoint(state.link, route) && (await resetLink(state.link, timeoutMs)))) dropLink(state);
  if (state.link) return state.link;
  const link = { client: await open(), route };
  state.link = link;
  state.info.backend = route.backend;
  // On a standby: failback must find this session (health kicks by routedFor).
  if (route.routedFor !== undefined) state.info.routedFor = route.routedFor;
  else delete state.info.routedFor;
  return link;
}

/** Make `link` ready for a new transaction with RSET (RFC 5321 §4.1.1.5); false means drop it and reconnect. */
export async function resetLink(link: BackendLink, timeoutMs: number): Promise<boolean> {
  if (!link.client.alive) return false;
  try {
    const r = await link.client.command('RSET', timeoutMs);
    return r.code === 250;
  } catch {
    return false;
  }
}

/**
 * The MAIL command for the backend: the client's reverse-path and the parameters the backend
 * understands (RFC 1870 SIZE, RFC 6152 BODY). Unknown parameters are not passed on.
 */
export function mailCommand(from: SMTPServerAddress, backend: SmtpBackendClient): string {
  const args = from.args || {};
  const params: string[] = [];
  const size = args.SIZE;
  if (typeof size === 'string' && /^\d{1,20}$/.test(size) && backend.has('SIZE')) params.push(`SIZE=${size}`);
  const body = typeof args.BODY === 'string' ? args.BODY.toUpperCase() : undefined;
  if (body === '8BITMIME' && backend.has('8BITMIME')) params.push('BODY=8BITMIME');
  return `MAIL FROM:<${from.address}>${params.length ? ` ${params.join(' ')}` : ''}`;
}

export function rcptCommand(to: SMTPServerAddress): string {
  return `RCPT TO:<${to.address}>`;
}

/** Outcome of sending a MAIL or RCPT: accepted, or the reply to give the client. */
export type StepResult = { ok: true; reply: BackendReply } | { ok: false; reply: ClientReply; backendReply?: BackendReply; error?: ProxyError };

/** Send MAIL/RCPT and classify. A failed connection (or backend 421) is reported as such; the caller drops the link. */
export async function relayStep(link: BackendLink, line: string, timeoutMs: number): Promise<StepResult> {
  try {
    const r = await link.client.command(line, timeoutMs);
    if (isPositive(r)) return { ok: true, reply: r };
    if (r.code === 421) link.client.destroy();
    return { ok: false, reply: forwardReply(r), backendReply: r };
  } catch (e) {
    link.client.destroy();
    return { ok: false, reply: REPLY.backendTemp, error: toProxyError(e, 'BACKEND_UNAVAILABLE') };
  }
}

export interface RelayDataResult {
  verdict: DataVerdict;
  /** Message bytes as received from the client (before the trace header and stuffing). */
  bytes: number;
  /** The client's message went over the size limit; the backend transfer was abandoned. */
  tooLarge: boolean;
  /** The client went away during DATA. */
  clientGone: boolean;
  error?: ProxyError;
  /** The backend's replies after the final dot (LMTP: one per recipient), when it got that far. */
  replies?: BackendReply[];
  /** LMTP: the replies read before the backend failed, fewer than the recipients (those recipients' fate is known). */
  partial?: BackendReply[];
}

/** Let smtp-server finish reading a message we no longer forward (it waits for the stream's end). */
function drain(stream: SMTPServerDataStream): void {
  stream.unpipe();
  stream.resume();
}

/**
 * DATA on the backend, then the message (optionally after `prefix`, e.g. a Received header),
 * then the reply per accepted recipient (LMTP, RFC 2033 §4.2) or one reply (SMTP).
 * Never reports 'delivered' unless the backend said so for every recipient.
 */
export async function relayData(link: BackendLink, stream: SMTPServerDataStream, opts: {
  prefix: Buffer | null;
  recipients: string[];
  commandTimeoutMs: number;
  dataTimeoutMs: number;
}): Promise<RelayDataResult> {
  const { client } = link;
  const deferred = (error?: ProxyError, extra: Partial<RelayDataResult> = {}): RelayDataResult => ({
    verdict: { outcome: 'deferred', reply: REPLY.backendTemp, failures: [] }, bytes: stream.byteLength, tooLarge: false, clientGone: false, ...(error ? { error } : {}), ...extra,
  });
  stream.on('error', () => undefined);
  // smtp-server counts bytes before passing them on, so sizeExceeded is set before the
  // oversized chunk could reach the backend: abandon the transfer (no final dot is sent).
  let tooLarge = false;
  const replies: BackendReply[] = [];
  const watchSize = (): void => {
    if (stream.sizeExceeded && !tooLarge) {
      tooLarge = true;
      client.destroy();
    }
  };
  try {
    const go = await client.command('DATA', opts.commandTimeoutMs);
    if (go.code !== 354) {
      drain(stream);
      if (go.code === 421) client.destroy();
      return { verdict: { outcome: go.code >= 500 && go.code !== 421 ? 'rejected' : 'deferred', reply: forwardReply(go), failures: [] }, bytes: stream.byteLength, tooLarge: false, clientGone: false };
    }
    // Registered in the same tick as sendData's pipe, and before it: no chunk is lost, and an
    // oversized chunk is seen here before the pipe could write it.
    stream.on('data', watchSize);
    const bytes = await client.sendData(stream, opts.prefix, opts.dataTimeoutMs);
    const expected = client.lmtp ? opts.recipients.length : 1;
    for (let i = 0; i < expected; i++) replies.push(await client.read(opts.dataTimeoutMs, 'end of DATA'));
    return { verdict: dataVerdict(replies, opts.recipients), bytes, tooLarge: false, clientGone: false, replies };
  } catch (e) {
    const err = isProxyError(e) ? e : toProxyError(e, 'BACKEND_UNAVAILABLE');
    client.destroy();
    drain(stream);
    if (tooLarge || stream.sizeExceeded) {
      await waitEnd(stream);
      return { verdict: { outcome: 'rejected', reply: REPLY.tooLarge, failures: [] }, bytes: stream.byteLength, tooLarge: true, clientGone: false };
    }
    // An LMTP backend that fails between its per-recipient replies has delivered to those it answered 250 (a 4xx for them
    // would make the MTA deliver again).
    return deferred(err, { clientGone: err.code === 'INTERNAL', ...(client.lmtp && replies.length > 0 ? { partial: replies } : {}) });
  } finally {
    stream.off('data', watchSize);
  }
}

function waitEnd(stream: SMTPServerDataStream): Promise<void> {
  if (stream.readableEnded || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once('end', resolve);
    stream.once('close', resolve);
  });
}

/** One summary record and one metric per DATA outcome; `base` names the transaction (from, rcpts, backend, …). */
export function transactionSummary(log: Logger, service: string, base: Record<string, unknown>, started: number | undefined, clock: Clock) {
  return (result: string, r: ClientReply, extra: Record<string, unknown>): void => {
    smtpMessagesTotal.inc({ service, result });
    const fields = { phase: 'transaction', service, ...base, result, reply: `${r.code} ${r.text}`, ms: started ? clock.now() - started : 0, ...extra };
    if (result === 'delivered') log.info(fields, 'smtp transaction');
    else log.warn(fields, 'smtp transaction');
  };
}

export type DataCallback = (err?: Error | null, message?: string) => void;
type Summary = ReturnType<typeof transactionSummary>;

/** No usable backend transaction at DATA: read the client's message away, answer 451 and log it; nothing is claimed delivered. */
export function refuseData(stream: SMTPServerDataStream, summary: Summary, callback: DataCallback): void {
  stream.on('error', () => undefined);
  stream.resume();
  summary('deferred', REPLY.backendTemp, { detail: 'backend connection lost before DATA' });
  callback(replyError(REPLY.backendTemp));
}

/** Stream DATA to the backend and answer the client with the backend's verdict: 2xx only when every recipient was accepted. */
export function relayAndAnswer(link: BackendLink, stream: SMTPServerDataStream, opts: Parameters<typeof relayData>[2], p: {
  summary: Summary; log: Logger; service: string; onLinkDead(): void; callback: DataCallback;
}): void {
  relayData(link, stream, opts).then((res) => {
    const result = res.clientGone ? 'aborted' : res.tooLarge ? 'too_large' : res.verdict.outcome;
    p.summary(result, res.verdict.reply, {
      size: res.bytes,
      ...(res.verdict.failures.length ? { failures: res.verdict.failures.slice(0, 20) } : {}),
      ...(res.error ? { detail: res.error.detail } : {}),
    });
    if (!link.client.alive) p.onLinkDead();
    const r = res.verdict.reply;
    if (r.code >= 200 && r.code < 300) return p.callback(null, r.text);
    p.callback(replyError(r));
  }, (e: unknown) => {
    p.log.error({ phase: 'data', err: String(e) }, `${p.service} DATA failed`);
    p.callback(replyError(REPLY.backendTemp));
  });
}

/** Count a client error; once smtp.maxErrors is reached the answer becomes the closing 421 instead of `reply`. */
export function countedError(state: { errors: number; config: { smtp: { maxErrors: number } } }, reply: ClientReply): Error {
  state.errors += 1;
  return replyError(state.errors >= state.config.smtp.maxErrors ? REPLY.tooManyErrors : reply);
}

/** Say QUIT to the backend transaction's connection (if any) and forget it. */
export function dropLink(state: { link?: BackendLink | undefined }): void {
  state.link?.client.quit();
  state.link = undefined;
}

/** The `mailproxy_smtp_recipients_total` result of a RCPT the backend step did not accept. */
export function refusedRcptResult(step: StepResult & { ok: false }): 'backend_unavailable' | 'rejected' | 'deferred' {
  return step.error ? 'backend_unavailable' : step.reply.code >= 500 ? 'rejected' : 'deferred';
}

/** Run an smtp-server handler's async body: a throw it did not expect is logged and answered with the temporary error. */
export function runHandler(log: Logger, phase: string, message: string, callback: (err?: Error | null) => void, body: () => Promise<void>): void {
  body().catch((e: unknown) => {
    log.error({ phase, err: String(e) }, message);
    callback(replyError(REPLY.backendTemp));
  });
}

/**
 * What every SMTP/LMTP backend session of a client connection is opened with: the client endpoint and TLS, our EHLO
 * name, session id and hop count, debug notes and the session's trace; `login` adds XCLIENT attributes and credentials.
 * Loop protection: the hop count a trusted upstream sent (XCLIENT TTL=), else loopProtection.proxyTtl; at 1 or less
 * this throws ROUTE_LOOP (the callers answer the temporary error), as IMAP/POP3 logins do. The client endpoint is the
 * one a trusted upstream forwarded (XCLIENT ADDR/PORT), else the connection's.
 */
export function backendRequest(state: ConnState, secure: boolean, backend: string, login: Pick<SmtpBackendLoginContext, 'xclient' | 'credentials'>) {
  const { config, upstream } = state;
  const hop = nextHop(upstream?.ttl, upstream?.ttl !== undefined, config.loopProtection.proxyTtl);
  if (!hop.ok) throw new ProxyError('ROUTE_LOOP', `hop count spent (XCLIENT TTL ${hop.ttl}) for backend ${backend}`);
  return {
    client: clientOf(state),
    clientTls: secure,
    login: { heloName: smtpHostname(config), sessionId: state.conn.id, proxyTtl: hop.next, ...login },
    onNote: (note: string) => state.log.debug({ phase: 'backend', backend }, note),
    trace: state.trace,
  };
}

/**
 * RCPT (inbound SMTP, LMTP): the recipient's account, or the reply and metric label to refuse it with. Mail for a traced
 * user traces the session from here on (its dialogue so far is written while any trace is active).
 */
export async function recipientAccount(state: ConnState, address: string): Promise<{ account: Account } | { reply: ClientReply; result: string }> {
  let account: Account | null;
  try {
    account = await state.directory.lookupRecipient(address);
  } catch (e) {
    const err = toProxyError(e, 'DIRECTORY_UNAVAILABLE');
    state.log.warn({ phase: 'rcpt', reason: err.spec.logReason, detail: err.detail }, 'recipient lookup failed');
    return { reply: REPLY.directoryTemp, result: 'directory_unavailable' };
  }
  if (!account) return { reply: REPLY.unknownRecipient, result: 'unknown' };
  state.trace.identify(address, account.login);
  state.trace.event('trace: recipient', { recipient: address, user: account.login });
  return { account };
}
