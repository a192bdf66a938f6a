// Owns the submission service (RFC 6409, 4954, 3207, 8314): AUTH through the one auth path, then each transaction relayed to the user's backend or the central relay.
// Must not deliver or queue mail itself: every reply about a message is the backend's own (or a temporary failure), never an invented 250.
import { toProxyError } from '../../errors.js';
import { openGate } from '../../health/gate.js';
import { loginsTotal, smtpMessagesTotal, smtpRecipientsTotal, tierLimitRefusalsTotal } from '../../metrics.js';
import { resolveRoute, type Route } from '../../directory/backends.js';
import type { Account } from '../../directory/directory.js';
import type { Config } from '../../config/schema.js';
import { tokenErrorChallenge } from '../sasl.js';
import type { Credentials, TokenMechanism } from '../../core/types.js';
import { installOAuthBearer } from './sasl-oauthbearer.js';
import type { ConnectionHandler } from '../protocol.js';
import { SmtpBackendClient } from './backend-client.js';
import { admit, backendCredentials, type AdmittedRoute } from '../backend-session.js';
import { AuthPenalty } from '../auth-penalty.js';
import { clientOf, createFrontend, pipelineDeps, setPhase, type ConnState, type SmtpServiceDeps } from './frontend.js';
import { REPLY, catalogueReply, replyError, type ClientReply } from './replies.js';
import { backendRequest, countedError, dropLink, isRepeatedRecipient, linkTo, mailCommand, rcptCommand, refuseData, refusedRcptResult, relayAndAnswer, relayStep, runHandler, transactionSummary, type BackendLink } from './transaction.js';

export type { SmtpServiceDeps } from './frontend.js';

interface SubmissionState extends ConnState {
  account?: Account;
  /** Kept only to log in to the backend as the user; never logged. */
  secret?: string | undefined;
  /** A bearer-token login: the client's mechanism and token, passed on to the backend (oauth.backendLogin token). */
  token?: { mechanism: TokenMechanism; token: string } | undefined;
  errors: number;
  /** In the tier's session registry (released when the connection closes). */
  tierRegistered?: boolean;
  /** The client connection is gone (onClose ran). */
  closed?: boolean;
  link?: BackendLink;
  /** The transaction in progress; undefined between transactions. */
  txn?: { from: string; rcpts: string[]; started: number } | undefined;
}

const SERVICE = 'submission';

/** The central relay as a route (not in the backends table; health keys it by this name). */
function centralRelayRoute(relay: NonNullable<Config['smtp']['centralRelay']>): Route {
  return { backend: 'central-relay', protocol: 'submission', host: relay.host, port: relay.port, tls: relay.tls, tlsVerify: true, servername: relay.host, trustsProxy: false, forwardClientAddress: 'none' };
}

export function createSubmissionService(deps: SmtpServiceDeps): ConnectionHandler {
  const { gate } = deps;
  installOAuthBearer();
  const pipeline = pipelineDeps(deps);

  const routeFor = (config: Config, account: Account): Route => (config.smtp.centralRelay ? centralRelayRoute(config.smtp.centralRelay) : resolveRoute(config, account.host, 'submission'));

  /** Count an error reply; past smtp.maxErrors the reply becomes 421 and smtp-server closes. */
  const penalty = deps.penalty ?? new AuthPenalty();
  const delayed = (state: SubmissionState, fn: () => void, user: string): void => {
    // Slows password guessing (doubling per failure from this address) without holding anything but this client's dialogue.
    const { smtp } = state.config;
    const tier = deps.tier;
    if (!tier) { state.clock.setTimeout(fn, penalty.failure(clientOf(state).address, smtp.authFailureDelayMs, smtp.authFailureMaxDelayMs)); return; }
    // Tier-wide (per address and per login name); falls back to local counts within the tier's deadline.
    void tier.penalty.failure(clientOf(state).address, user, smtp.authFailureDelayMs, smtp.authFailureMaxDelayMs).then((ms) => state.clock.setTimeout(fn, ms));
  };

  return createFrontend<SubmissionState>(deps, {
    protocol: 'submission',
    options: ({ smtp, ...config }) => ({
      authMethods: ['PLAIN', 'LOGIN', ...(config.oauth?.mechanisms ?? [])],
      authOptional: false,
      allowInsecureAuth: !smtp.requireTlsForAuth,
      authRequiredMessage: REPLY.authRequired.text,
      maxAllowedUnauthenticatedCommands: smtp.maxErrors,
      size: smtp.maxMessageBytes,
      maxRecipients: smtp.maxRecipients,
      disableReverseLookup: true,
      // RFC 4954 §4: a server takes its mechanisms' largest responses; an access token with group claims runs to 4–8 KB
      // (XOAUTH2 line with it: up to ~11 KB), past the 4 KB command line kept otherwise.
      ...(config.oauth ? { maxCommandLength: 16 * 1024 } : {}),
    }),
    createState: (base) => ({ ...base, errors: 0 }),
    disabledCommands: (state, secure) => {
      const off = ['XCLIENT', 'XFORWARD', 'WIZ', 'SHELL', 'KILL'];
      if (secure || state.conn.listener.tls !== 'starttls' || !state.tls) off.push('STARTTLS');
      // RFC 4954 §4 / RFC 8314: AUTH is not even offered before TLS unless configured so.
      if (!secure && state.config.smtp.requireTlsForAuth) off.push('AUTH');
      return off;
    },

    onAuth(state, auth, _session, callback) {
      const typed = auth.method === 'PLAIN' ? auth.authcid ?? '' : auth.username ?? '';
      state.trace.identify(typed);
      const fail = (reply: ClientReply, label: string, immediate = false): void => {
        loginsTotal.inc({ protocol: SERVICE, result: label });
        state.trace.event('trace: login failed', { result: label });
        state.errors += 1;
        const r = state.errors >= state.config.smtp.maxErrors ? REPLY.tooManyErrors : reply;
        const send = (): void => callback(null, { responseCode: r.code, message: r.text });
        if (immediate) send();
        else delayed(state, send, typed);
      };
      const method = auth.method as string;
      const tokenMech = (state.config.oauth?.mechanisms ?? []).find((m) => m === method);
      if (method !== 'PLAIN' && method !== 'LOGIN' && !tokenMech) return fail({ code: 504, text: '5.5.4 Unrecognized authentication type' }, 'mechanism', true);
      // RFC 4616: an authorization identity other than the authentication identity is not supported.
      if (auth.method === 'PLAIN' && auth.authzid && auth.authzid !== auth.authcid) return fail(catalogueReply('AUTHZ_UNSUPPORTED'), 'authz_unsupported');
      const user = auth.method === 'PLAIN' ? auth.authcid ?? '' : auth.username ?? '';
      const accessToken = (auth as { accessToken?: string }).accessToken ?? '';
      const credentials: Credentials = tokenMech
        ? { user, token: accessToken, mechanism: tokenMech }
        : { user, password: auth.password ?? '', mechanism: auth.method === 'PLAIN' ? 'PLAIN' : 'LOGIN' };
      if (!user && !tokenMech) return fail(catalogueReply('AUTH_FAILED'), 'auth_failed');
      // RFC 7628 §3.2.2: a refused token gets the JSON error as a 334 challenge; smtp-server sends 535 after the client's answer.
      const tokenRefused = (): void => {
        loginsTotal.inc({ protocol: SERVICE, result: 'auth_failed' });
        state.errors += 1;
        const o = state.config.oauth;
        const data = JSON.parse(Buffer.from(tokenErrorChallenge({ status: tokenMech === 'XOAUTH2' ? '401' : 'invalid_token', ...(o?.scope ? { scope: o.scope } : {}), ...(o?.openidConfiguration ? { openidConfiguration: o.openidConfiguration } : {}) }), 'base64').toString()) as unknown;
        delayed(state, () => callback(null, { data } as never), typed);
      };
      const authenticated = (account: Account): void => {
        state.trace.identify(typed, account.login);
        state.trace.event('trace: login ok', { user: account.login, mechanism: method });
        state.trace.loggedIn();
        state.account = account;
        if ('password' in credentials) state.secret = credentials.password;
        else state.token = { mechanism: credentials.mechanism, token: credentials.token };
        state.info.user = account.login;
        if (account.mail !== undefined) state.info.mail = account.mail;
        setPhase(state, 'relay');
        loginsTotal.inc({ protocol: SERVICE, result: 'ok' });
        state.log.info({ phase: 'auth', user: account.login, mechanism: method }, 'smtp authenticated');
        callback(null, { user: { username: account.login } });
      };
      state.directory.authenticate(credentials).then((result) => {
        if (!result.ok) {
          state.log.info({ phase: 'auth', user, mechanism: method, result: 'auth_failed' }, 'smtp authentication failed');
          return tokenMech ? tokenRefused() : fail(catalogueReply('AUTH_FAILED'), 'auth_failed');
        }
        const account = result.account;
        const route = routeFor(state.config, account); // NO_ROUTE: a temporary failure now beats one at every MAIL
        const tier = deps.tier;
        const address = clientOf(state).address;
        if (!tier) {
          penalty.success(address);
          return authenticated(account);
        }
        // The tier's session registry and limits, as for IMAP/POP3; the admit call also clears the address's and name's penalty.
        const entry = { id: state.conn.id, protocol: SERVICE, user: account.login, ...(account.mail !== undefined ? { mail: account.mail } : {}), backend: route.backend, address, client: state.info.client, startedAt: state.info.startedAt };
        return tier.sessions.admit(entry, tier.penalty.clearLocal(address, typed)).then((admitted) => {
          if (!admitted.ok) {
            tierLimitRefusalsTotal.inc({ protocol: SERVICE, limit: admitted.limit });
            state.log.info({ phase: 'auth', user: account.login, limit: admitted.limit, count: admitted.count, source: admitted.source }, 'tier session limit reached');
            return fail(catalogueReply('SESSION_LIMIT'), 'session_limit', true);
          }
          // The client went away while Redis answered: onClose has run already, so release here.
          if (state.closed) return tier.sessions.release(state.conn.id);
          state.tierRegistered = true;
          authenticated(account);
        });
      }).catch((e: unknown) => {
        const err = toProxyError(e, 'INTERNAL');
        state.log.warn({ phase: 'auth', user, reason: err.spec.logReason, detail: err.detail }, 'smtp authentication error');
        const reply = err.code === 'INTERNAL' ? catalogueReply('DIRECTORY_UNAVAILABLE') : catalogueReply(err.code);
        // smtp-server's XOAUTH2/OAUTHBEARER report a temporary failure only as an error with its code.
        if (tokenMech) {
          loginsTotal.inc({ protocol: SERVICE, result: err.spec.metricLabel });
          return callback(replyError(reply));
        }
        fail(reply, err.spec.metricLabel, true);
      });
    },

    onMailFrom(state, from, session, callback) {
      const account = state.account;
      if (!account || !session.user) return callback(replyError(REPLY.authRequired));
      const { config } = state;
      const smtp = config.smtp;
      state.txn = undefined;
      runHandler(state.log, 'mail', 'submission MAIL failed', callback, async (): Promise<void> => {
        let route: AdmittedRoute;
        try {
          const pooled = config.smtp.centralRelay ? undefined : await deps.pools?.resolve(config, account.host, account.login, 'submission');
          // A pool member was chosen with health applied already (a draining member keeps its users until their moment).
          route = pooled ? admit(openGate, pooled.route) : admit(gate, routeFor(config, account));
          if (pooled) state.info.pool = pooled.pool;
        } catch (e) {
          const err = toProxyError(e, 'INTERNAL');
          state.log.warn({ phase: 'mail', reason: err.spec.logReason, detail: err.detail }, 'no backend for submission');
          return callback(countedError(state, REPLY.backendTemp));
        }
        let link: BackendLink;
        try {
          link = await linkTo(state, route, smtp.commandTimeoutMs, () => SmtpBackendClient.open(pipeline, route, config.backendLogin, backendRequest(state, session.secure, route.backend, {
              xclient: { LOGIN: account.login, HELO: session.hostNameAppearsAs || undefined, PROTO: session.openingCommand === 'EHLO' ? 'ESMTP' : 'SMTP' },
              // A token login passes the token on (oauth.backendLogin token) or uses the master user (oauth.backendLogin master).
              credentials: state.token
                ? (config.oauth?.backendLogin === 'master' ? backendCredentials({ ...config.backendLogin, mode: 'master' }, account.login, '') : { user: account.login, password: '', token: state.token })
                : backendCredentials(config.backendLogin, account.login, state.secret ?? ''),
          })));
        } catch (e) {
          const err = toProxyError(e, 'INTERNAL');
          state.log.warn({ phase: 'backend', backend: route.backend, reason: err.spec.logReason, detail: err.detail }, 'submission backend unavailable');
          smtpMessagesTotal.inc({ service: SERVICE, result: 'backend_unavailable' });
          return callback(countedError(state, REPLY.backendTemp));
        }
        const step = await relayStep(link, mailCommand(from, link.client), smtp.commandTimeoutMs);
        if (!step.ok) {
          if (!link.client.alive) dropLink(state);
          if (step.error) state.log.warn({ phase: 'mail', backend: route.backend, detail: step.error.detail }, 'backend failed at MAIL');
          return callback(countedError(state, step.reply));
        }
        state.txn = { from: from.address, rcpts: [], started: state.clock.now() };
        callback();
      });
    },

    onRcptTo(state, to, _session, callback) {
      const link = state.link;
      const txn = state.txn;
      if (!link || !txn || !link.client.alive) {
        smtpRecipientsTotal.inc({ service: SERVICE, result: 'backend_unavailable' });
        return callback(countedError(state, REPLY.backendTemp));
      }
      if (isRepeatedRecipient(txn.rcpts, to.address)) return callback();
      relayStep(link, rcptCommand(to), state.config.smtp.commandTimeoutMs).then((step) => {
        if (step.ok) {
          txn.rcpts.push(to.address);
          smtpRecipientsTotal.inc({ service: SERVICE, result: 'accepted' });
          return callback();
        }
        smtpRecipientsTotal.inc({ service: SERVICE, result: refusedRcptResult(step) });
        if (!link.client.alive) dropLink(state);
        callback(countedError(state, step.reply));
      }, (e: unknown) => {
        state.log.error({ phase: 'rcpt', err: String(e) }, 'submission RCPT failed');
        callback(replyError(REPLY.backendTemp));
      });
    },

    onData(state, stream, _session, callback) {
      const link = state.link;
      const txn = state.txn;
      state.txn = undefined;
      const summary = transactionSummary(state.log, SERVICE, { user: state.account?.login, from: txn?.from, rcpts: txn?.rcpts.length ?? 0, backend: link?.route.backend }, txn?.started, state.clock);
      if (!link || !txn || !link.client.alive) {
        if (link && !link.client.alive) dropLink(state);
        return refuseData(stream, summary, callback);
      }
      const { smtp } = state.config;
      relayAndAnswer(link, stream, { prefix: null, recipients: txn.rcpts, commandTimeoutMs: smtp.commandTimeoutMs, dataTimeoutMs: smtp.dataTimeoutMs },
        { summary, log: state.log, service: SERVICE, onLinkDead: () => dropLink(state), callback });
    },

    onClose(state) {
      state.closed = true;
      if (state.tierRegistered) {
        state.tierRegistered = false;
        deps.tier?.sessions.release(state.conn.id);
      }
      dropLink(state);
      state.secret = undefined;
      state.token = undefined;
    },
  });
}
