// Owns the LMTP front-end listener (RFC 2033): an MTA delivers to the tier; each recipient is routed to its owning backend (one backend
// transaction per backend, fanned out; a pool recipient to the user's member) and gets its own reply after DATA, in RCPT order. Must not answer 250 for a recipient its backend did not accept.
import type { SMTPServerAddress } from 'smtp-server';
import { toProxyError } from '../../errors.js';
import { openGate } from '../../health/gate.js';
import { smtpMessagesTotal, smtpRecipientsTotal } from '../../metrics.js';
import type { Route } from '../../directory/backends.js';
import { admit, type AdmittedRoute } from '../backend-session.js';
import { SmtpBackendClient } from './backend-client.js';
import type { ConnectionHandler } from '../protocol.js';
import { teeDataStream } from './data-tee.js';
import { createFrontend, pipelineDeps, setPhase, smtpHostname, type ConnState, type SmtpServiceDeps } from './frontend.js';
import { recipientDeliveryRoute } from './inbound.js';
import { formatReceived } from './received.js';
import { REPLY, partialRecipientReplies, perRecipientReplies, replyError, type ClientReply } from './replies.js';
import { backendRequest, isRepeatedRecipient, recipientAccount, mailCommand, rcptCommand, refusedRcptResult, relayData, relayStep, resetLink, runHandler, sameEndpoint, type BackendLink } from './transaction.js';

/** One backend's share of the transaction: its connection and the recipients it accepted, in RCPT order. */
interface Leg { link: BackendLink; open: boolean; broken: boolean; rcpts: string[] }

interface LmtpState extends ConnState {
  errors: number;
  /** Backend connections by backend name, kept across transactions (RSET between them). */
  legs: Map<string, Leg>;
  /** `accepted`: every RCPT answered 250, in order, repeats included (RFC 2033 §4.2 owes each one a reply after DATA). */
  txn?: { from: SMTPServerAddress; rcpts: Array<{ address: string; backend: string }>; accepted: string[]; started: number } | undefined;
}

const SERVICE = 'lmtp';

export function createLmtpService(deps: SmtpServiceDeps): ConnectionHandler {
  const { gate } = deps;
  const pipeline = pipelineDeps(deps);

  const dropLeg = (state: LmtpState, name: string): void => {
    state.legs.get(name)?.link.client.quit();
    state.legs.delete(name);
  };

  /** The leg for `route` with MAIL sent in this transaction; a reply when that is impossible. */
  async function legFor(state: LmtpState, route: Route, pooled: boolean, session: { hostNameAppearsAs: string; secure: boolean }): Promise<Leg | ClientReply> {
    const { config } = state;
    const txn = state.txn!;
    let admitted: AdmittedRoute;
    // A pool member was chosen with health (or the tier's view) applied; the gate would refuse a draining member its users' mail.
    try { admitted = admit(pooled ? openGate : gate, route); } catch (e) {
      state.log.warn({ phase: 'rcpt', backend: route.backend, reason: toProxyError(e, 'BACKEND_DOWN').spec.logReason }, 'backend not admitted');
      return REPLY.backendTemp;
    }
    let leg = state.legs.get(route.backend);
    if (leg && (leg.broken || !leg.link.client.alive || !sameEndpoint(leg.link, admitted))) { dropLeg(state, route.backend); leg = undefined; }
    if (!leg) {
      try {
        const client = await SmtpBackendClient.open(pipeline, admitted, config.backendLogin, backendRequest(state, session.secure, admitted.backend, {
          xclient: { HELO: session.hostNameAppearsAs || undefined, PROTO: 'ESMTP' },
        }));
        leg = { link: { client, route: admitted }, open: false, broken: false, rcpts: [] };
        state.legs.set(route.backend, leg);
      } catch (e) {
        const err = toProxyError(e, 'BACKEND_UNAVAILABLE');
        state.log.warn({ phase: 'backend', backend: admitted.backend, reason: err.spec.logReason, detail: err.detail }, 'lmtp backend unavailable');
        return REPLY.backendTemp;
      }
    }
    if (!leg.open) {
      const step = await relayStep(leg.link, mailCommand(txn.from, leg.link.client), config.smtp.commandTimeoutMs);
      if (!step.ok) {
        if (!leg.link.client.alive) dropLeg(state, route.backend);
        return step.reply;
      }
      leg.open = true;
    }
    return leg;
  }

  return createFrontend<LmtpState>(deps, {
    protocol: 'lmtp',
    options: ({ smtp }) => ({ lmtp: true, authOptional: true, size: smtp.maxMessageBytes, maxRecipients: smtp.maxRecipients, disableReverseLookup: true }),
    createState: (base) => ({ ...base, errors: 0, legs: new Map() }),
    disabledCommands: (state, secure) => {
      const off = ['AUTH', 'XCLIENT', 'XFORWARD', 'WIZ', 'SHELL', 'KILL'];
      if (secure || state.conn.listener.tls !== 'starttls' || !state.tls) off.push('STARTTLS');
      return off;
    },

    onMailFrom(state, from, _session, callback) {
      state.txn = { from, rcpts: [], accepted: [], started: Date.now() };
      // Legs from the previous transaction are reset (RFC 5321 §4.1.1.5) and reused; MAIL goes out at their first recipient.
      void Promise.all([...state.legs.entries()].map(async ([name, leg]) => {
        leg.rcpts = [];
        if (!leg.open) return;
        leg.open = false;
        if (!(await resetLink(leg.link, state.config.smtp.commandTimeoutMs))) dropLeg(state, name);
      })).then(() => callback(), () => callback());
    },

    onRcptTo(state, to, session, callback) {
      const txn = state.txn;
      if (!txn) return callback(replyError({ code: 503, text: '5.5.1 Error: need MAIL command' }));
      if (isRepeatedRecipient(txn.rcpts.map((r) => r.address), to.address)) {
        txn.accepted.push(to.address);
        return callback();
      }
      const reject = (reply: ClientReply, result: string): void => {
        smtpRecipientsTotal.inc({ service: SERVICE, result });
        callback(replyError(reply));
      };
      runHandler(state.log, 'rcpt', 'lmtp RCPT failed', callback, async (): Promise<void> => {
        const found = await recipientAccount(state, to.address);
        if (!('account' in found)) return reject(found.reply, found.result);
        const { account } = found;
        let route: Route;
        let pooled = false;
        try { ({ route, pooled } = await recipientDeliveryRoute(deps, state.config, account)); } catch (e) {
          const err = toProxyError(e, 'NO_ROUTE');
          state.log.warn({ phase: 'rcpt', reason: err.spec.logReason, detail: err.detail }, 'no backend for recipient');
          return reject(REPLY.backendTemp, err.spec.metricLabel);
        }
        const leg = await legFor(state, route, pooled, session);
        if (!('link' in leg)) return reject(leg, 'backend_unavailable');
        const step = await relayStep(leg.link, rcptCommand(to), state.config.smtp.commandTimeoutMs);
        if (!step.ok) {
          if (!leg.link.client.alive) leg.broken = true;
          return reject(step.reply, refusedRcptResult(step));
        }
        leg.rcpts.push(to.address);
        txn.rcpts.push({ address: to.address, backend: route.backend });
        txn.accepted.push(to.address);
        setPhase(state, 'relay');
        smtpRecipientsTotal.inc({ service: SERVICE, result: 'accepted' });
        callback();
      });
    },

    onData(state, stream, session, callback) {
      const txn = state.txn;
      state.txn = undefined;
      if (!txn || txn.rcpts.length === 0) {
        stream.resume();
        return callback(replyError(REPLY.backendTemp));
      }
      // smtp-server keeps a repeated address once in its envelope and replies per envelope entry (here and when the message is too
      // large); each RCPT it answered 250 gets its own entry back, so the client gets exactly as many replies as it counts.
      const entries = new Map(session.envelope.rcptTo.map((r) => [r.address.toLowerCase(), r] as const));
      session.envelope.rcptTo = txn.accepted.flatMap((a) => entries.get(a.toLowerCase()) ?? []);
      const { smtp } = state.config;
      const legs = [...state.legs.entries()].filter(([, leg]) => leg.open && leg.rcpts.length > 0);
      const branches = teeDataStream(stream, legs.length);
      const received = Buffer.from(formatReceived({
        helo: session.hostNameAppearsAs || 'unknown', clientAddress: state.conn.client.address, byHostname: smtpHostname(state.config),
        protocol: 'LMTP', id: `${session.id}.${session.transaction}`, date: new Date(),
        ...(txn.rcpts.length === 1 ? { recipient: txn.rcpts[0]!.address } : {}),
      }), 'latin1');
      // Every backend gets the message at once; each recipient's reply comes from its own backend (RFC 2033 §4.2).
      void Promise.all(legs.map(async ([name, leg], i) => {
        const res = await relayData(leg.link, branches[i]!, { prefix: received, recipients: leg.rcpts, commandTimeoutMs: smtp.commandTimeoutMs, dataTimeoutMs: smtp.dataTimeoutMs });
        leg.open = false;
        if (!leg.link.client.alive) leg.broken = true;
        const replies = res.tooLarge ? leg.rcpts.map(() => REPLY.tooLarge) : res.replies ? perRecipientReplies(res.replies, leg.rcpts)
          : res.partial ? partialRecipientReplies(res.partial, leg.rcpts, res.verdict.reply) : leg.rcpts.map(() => res.verdict.reply);
        state.log[res.verdict.outcome === 'delivered' ? 'info' : 'warn']({ phase: 'transaction', service: SERVICE, backend: name, from: txn.from.address, rcpts: leg.rcpts.length, result: res.verdict.outcome, size: res.bytes, ms: Date.now() - txn.started, ...(res.error ? { detail: res.error.detail } : {}), ...(res.verdict.failures.length ? { failures: res.verdict.failures.slice(0, 20) } : {}) }, 'lmtp transaction');
        smtpMessagesTotal.inc({ service: SERVICE, result: res.tooLarge ? 'too_large' : res.verdict.outcome });
        return new Map(leg.rcpts.map((r, j) => [r.toLowerCase(), replies[j]!] as const));
      })).then((perLeg) => {
        const byRcpt = new Map<string, ClientReply>();
        for (const m of perLeg) for (const [k, v] of m) byRcpt.set(k, v);
        // smtp-server sends one reply per envelope recipient, in RCPT order; a recipient without a verdict is deferred.
        const answers = session.envelope.rcptTo.map((r) => {
          const reply = byRcpt.get(r.address.toLowerCase()) ?? REPLY.backendTemp;
          return reply.code >= 200 && reply.code < 300 ? reply.text : replyError(reply);
        });
        callback(null, answers as unknown as string);
      }, (e: unknown) => {
        state.log.error({ phase: 'data', err: String(e) }, 'lmtp DATA failed');
        callback(replyError(REPLY.backendTemp));
      });
    },

    onClose(state) {
      for (const name of [...state.legs.keys()]) dropLeg(state, name);
    },
  });
}
