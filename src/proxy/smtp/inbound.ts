// Owns the inbound (MX) service: recipients checked in the directory at RCPT, one owning backend per transaction, delivery by LMTP or SMTP with a Received header.
// Must not accept mail it has not handed over: 250 after DATA only when the backend accepted it for every accepted recipient.
import dns from 'node:dns';
import { openGate } from '../../health/gate.js';
import type { SMTPServerAddress } from 'smtp-server';
import { toProxyError } from '../../errors.js';
import { smtpRecipientsTotal } from '../../metrics.js';
import { resolveRoute, routeForBackend, type Route } from '../../directory/backends.js';
import type { ConnectionHandler } from '../protocol.js';
import type { Config } from '../../config/schema.js';
import { SmtpBackendClient } from './backend-client.js';
import { admit, type AdmittedRoute } from '../backend-session.js';
import { createFrontend, pipelineDeps, setPhase, smtpHostname, type ConnState, type SmtpServiceDeps } from './frontend.js';
import { formatReceived } from './received.js';
import { optional } from '../../core/optional.js';
import { REPLY, replyError, type ClientReply } from './replies.js';
import { backendRequest, countedError, recipientAccount, dropLink, isRepeatedRecipient, linkTo, mailCommand, rcptCommand, refuseData, refusedRcptResult, relayAndAnswer, relayStep, runHandler, transactionSummary, type BackendLink } from './transaction.js';

interface InboundTxn {
  from: SMTPServerAddress;
  /** Backend name fixed by the first accepted recipient (before any standby substitution). */
  backend?: string;
  /** The backend has this transaction's MAIL. */
  open: boolean;
  /** The backend connection died after accepting recipients: everything else is deferred. */
  broken: boolean;
  rcpts: string[];
  started: number;
}

interface InboundState extends ConnState {
  errors: number;
  link?: BackendLink;
  /** The transaction in progress; undefined between transactions. */
  txn?: InboundTxn | undefined;
}

const SERVICE = 'inbound';

/** Reverse lookups for the Received header, bounded so a slow resolver cannot stall greetings. */
function boundedResolver(): { reverse(ip: string, cb: (err: Error | null, hostnames?: string[]) => void): void } {
  const resolver = new dns.Resolver({ timeout: 1000, tries: 1 });
  return { reverse: (ip, cb) => resolver.reverse(ip, (err, names) => cb(err, names)) };
}

/** The delivery route for an account: LMTP or SMTP per backend setting, else smtp.inboundDelivery (inbound MX and the LMTP front-end). */
export function deliveryRoute(config: Config, host: string | null): Route {
  const base = resolveRoute(config, host, 'lmtp');
  const protocol = config.backends[base.backend]?.inboundDelivery ?? config.smtp.inboundDelivery;
  return protocol === 'lmtp' ? base : resolveRoute(config, host, 'smtp');
}

/**
 * A recipient's delivery route (inbound MX and the LMTP front-end): a pool recipient goes to the member that holds (or will
 * hold) the user's sessions (`pooled`: health already applied by the choice, so the gate is not asked again); plain hosts
 * as deliveryRoute. Throws POOL_MOVING / BACKEND_DOWN from the pool (a temporary reply).
 */
export async function recipientDeliveryRoute(deps: Pick<SmtpServiceDeps, 'pools'>, config: Config, account: { host: string | null; login: string }): Promise<{ route: Route; pooled: boolean }> {
  const pooled = await deps.pools?.resolve(config, account.host, account.login, 'lmtp');
  if (!pooled) return { route: deliveryRoute(config, account.host), pooled: false };
  const member = pooled.route.backend;
  const protocol = config.backends[member]?.inboundDelivery ?? config.smtp.inboundDelivery;
  return { route: protocol === 'lmtp' ? pooled.route : routeForBackend(config, member, 'smtp'), pooled: true };
}

export function createInboundService(deps: SmtpServiceDeps): ConnectionHandler {
  const resolver = boundedResolver();
  const { gate } = deps;
  const pipeline = pipelineDeps(deps);

  const recipientRoute = (config: Config, account: { host: string | null; login: string }) => recipientDeliveryRoute(deps, config, account);

  return createFrontend<InboundState>(deps, {
    protocol: 'smtp',
    options: ({ smtp }) => ({
      authOptional: true,
      size: smtp.maxMessageBytes,
      maxRecipients: smtp.maxRecipients,
      resolver,
    }),
    createState: (base) => ({ ...base, errors: 0 }),
    disabledCommands: (state, secure) => {
      const off = ['AUTH', 'XCLIENT', 'XFORWARD', 'WIZ', 'SHELL', 'KILL'];
      if (secure || state.conn.listener.tls !== 'starttls' || !state.tls) off.push('STARTTLS');
      return off;
    },

    onMailFrom(state, from, _session, callback) {
      // The owning backend is only known at the first recipient; nothing to ask anyone yet.
      state.txn = { from, open: false, broken: false, rcpts: [], started: state.clock.now() };
      callback();
    },

    onRcptTo(state, to, session, callback) {
      const txn = state.txn;
      if (!txn) return callback(replyError({ code: 503, text: '5.5.1 Error: need MAIL command' }));
      if (isRepeatedRecipient(txn.rcpts, to.address)) return callback();
      const reject = (reply: ClientReply, result: string, count = true): void => {
        smtpRecipientsTotal.inc({ service: SERVICE, result });
        callback(count ? countedError(state, reply) : replyError(reply));
      };
      runHandler(state.log, 'rcpt', 'inbound RCPT failed', callback, async (): Promise<void> => {
        if (txn.broken) return reject(REPLY.backendTemp, 'backend_unavailable');
        const found = await recipientAccount(state, to.address);
        if (!('account' in found)) return reject(found.reply, found.result);
        const { account } = found;
        let route: Route;
        let pooled = false;
        try {
          ({ route, pooled } = await recipientRoute(state.config, account));
        } catch (e) {
          const err = toProxyError(e, 'NO_ROUTE');
          state.log.warn({ phase: 'rcpt', reason: err.spec.logReason, detail: err.detail }, 'no backend for recipient');
          return reject(REPLY.backendTemp, err.spec.metricLabel);
        }
        // RFC 5321 §4.5.3.1.10: a 452 makes the sender try this recipient again in another transaction.
        if (txn.backend !== undefined && txn.backend !== route.backend) return reject(REPLY.otherBackend, 'other_backend', false);
        if (!txn.open) {
          const opened = await openTransaction(state, txn, route, session, pooled);
          if (opened) return reject(opened, 'backend_unavailable');
        }
        const link = state.link!;
        const step = await relayStep(link, rcptCommand(to), state.config.smtp.commandTimeoutMs);
        if (!step.ok) {
          if (!link.client.alive) {
            dropLink(state);
            if (txn.rcpts.length > 0) txn.broken = true;
            else txn.open = false;
          }
          if (step.error) state.log.warn({ phase: 'rcpt', backend: link.route.backend, detail: step.error.detail }, 'backend failed at RCPT');
          return reject(step.reply, refusedRcptResult(step));
        }
        txn.rcpts.push(to.address);
        smtpRecipientsTotal.inc({ service: SERVICE, result: 'accepted' });
        callback();
      });
    },

    onData(state, stream, session, callback) {
      const txn = state.txn;
      const link = state.link;
      state.txn = undefined;
      const summary = transactionSummary(state.log, SERVICE, { from: txn?.from.address, rcpts: txn?.rcpts.length ?? 0, backend: link?.route.backend, delivery: link?.route.protocol }, txn?.started, state.clock);
      if (!txn || !link || !txn.open || txn.broken || txn.rcpts.length === 0 || !link.client.alive) {
        if (link && !link.client.alive) dropLink(state);
        return refuseData(stream, summary, callback);
      }
      const { smtp } = state.config;
      const received = formatReceived({
        helo: session.hostNameAppearsAs || 'unknown',
        clientAddress: state.conn.client.address,
        ...optional('clientHostname', session.clientHostname || undefined),
        byHostname: smtpHostname(state.config),
        protocol: session.transmissionType || 'SMTP',
        id: `${session.id}.${session.transaction}`,
        ...optional('recipient', txn.rcpts.length === 1 ? txn.rcpts[0] : undefined),
        date: new Date(),
      });
      relayAndAnswer(link, stream, { prefix: Buffer.from(received, 'latin1'), recipients: txn.rcpts, commandTimeoutMs: smtp.commandTimeoutMs, dataTimeoutMs: smtp.dataTimeoutMs },
        { summary, log: state.log, service: SERVICE, onLinkDead: () => dropLink(state), callback });
    },

    onClose(state) {
      dropLink(state);
    },
  });

  /** Admit, connect (or reuse) and send MAIL for the first recipient; returns a reply on failure. */
  async function openTransaction(state: InboundState, txn: InboundTxn, route: Route, session: { hostNameAppearsAs: string; clientHostname: string; openingCommand: string; secure: boolean }, pooled = false): Promise<ClientReply | null> {
    const { config } = state;
    const { smtp } = config;
    let admitted: AdmittedRoute;
    try {
      // A pool member was chosen with health applied already (a draining member still takes its users' mail until their moment).
      admitted = admit(pooled ? openGate : gate, route);
    } catch (e) {
      const err = toProxyError(e, 'BACKEND_DOWN');
      state.log.warn({ phase: 'rcpt', backend: route.backend, reason: err.spec.logReason }, 'backend not admitted');
      return REPLY.backendTemp;
    }
    let link: BackendLink;
    try {
      const name = session.clientHostname && !session.clientHostname.startsWith('[') ? session.clientHostname : undefined;
      link = await linkTo(state, admitted, smtp.commandTimeoutMs, () => SmtpBackendClient.open(pipeline, admitted, config.backendLogin, backendRequest(state, session.secure, admitted.backend, {
        xclient: { HELO: session.hostNameAppearsAs || undefined, NAME: name ?? '[UNAVAILABLE]', PROTO: session.openingCommand === 'EHLO' ? 'ESMTP' : 'SMTP' },
      })));
    } catch (e) {
      const err = toProxyError(e, 'BACKEND_UNAVAILABLE');
      state.log.warn({ phase: 'backend', backend: admitted.backend, reason: err.spec.logReason, detail: err.detail }, 'inbound backend unavailable');
      return REPLY.backendTemp;
    }
    const step = await relayStep(link, mailCommand(txn.from, link.client), smtp.commandTimeoutMs);
    if (!step.ok) {
      if (!link.client.alive) dropLink(state);
      if (step.error) state.log.warn({ phase: 'mail', backend: admitted.backend, detail: step.error.detail }, 'backend failed at MAIL');
      return step.reply;
    }
    txn.open = true;
    txn.backend = route.backend;
    setPhase(state, 'relay');
    return null;
  }
}
