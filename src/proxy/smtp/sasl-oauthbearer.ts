// Owns the AUTH OAUTHBEARER (RFC 7628) mechanism added to smtp-server (which ships PLAIN, LOGIN, XOAUTH2), handing the token to onAuth like XOAUTH2, and the 535 both send after a refused token.
// Must not validate tokens (submission.ts does, through the directory) nor log the payload.
import SASL from 'smtp-server/lib/sasl.js';
import { decodeOAuthBearer } from '../sasl.js';

/** The parts of smtp-server's connection (the mechanisms' `this`) this mechanism uses. */
interface Connection {
  send(code: number, text?: string): void;
  session: { user?: unknown; transmissionType?: string };
  _nextHandler: unknown;
  _transmissionType(): string;
  _server: { onAuth(auth: { method: string; username: string; accessToken: string }, session: unknown, cb: (err: (Error & { responseCode?: number }) | null | undefined, response?: { user?: unknown; data?: unknown }) => void): void };
}
type Done = () => void;

function token(this: Connection, canAbort: boolean, raw: Buffer | string, done: Done): void {
  const text = String(raw ?? '').trim();
  if (canAbort && text === '*') {
    this.send(501, 'Authentication aborted');
    return done();
  }
  const r = decodeOAuthBearer(text);
  if (!r.ok) {
    this.send(501, 'Error: invalid OAUTHBEARER response');
    return done();
  }
  this._server.onAuth({ method: 'OAUTHBEARER', username: r.credentials.user, accessToken: r.credentials.token }, this.session, (err, response) => {
    if (err) {
      this.send(err.responseCode ?? 535, err.message);
      return done();
    }
    if (!response?.user) {
      // RFC 7628 §3.2.2: the error as a 334 challenge; whatever the client answers (%x01), 535 follows.
      this._nextHandler = tokenRefused.bind(this);
      this.send(334, Buffer.from(JSON.stringify(response?.data ?? { status: 'invalid_token' })).toString('base64'));
      return done();
    }
    this.session.user = response.user;
    this.session.transmissionType = this._transmissionType();
    this.send(235, 'Authentication successful');
    done();
  });
}

/** The 535 after a refused token's challenge (README: `535 5.7.8`, as for a wrong password). */
function tokenRefused(this: Connection, _data: unknown, next: Done): void {
  this.send(535, '5.7.8 Authentication credentials invalid');
  next();
}

let installed = false;

/** Register SASL_OAUTHBEARER with smtp-server (once per process); offered only where authMethods lists it. */
export function installOAuthBearer(): void {
  if (installed) return;
  installed = true;
  const table = SASL as unknown as Record<string, unknown>;
  // smtp-server's own XOAUTH2 ends a refused token with `535 Error: Username and Password not accepted` (no enhanced code).
  table['XOAUTH2_error'] = tokenRefused;
  table['SASL_OAUTHBEARER'] = function (this: Connection, args: string[], done: Done): void {
    if (args.length > 1) {
      this.send(501, 'Error: syntax: AUTH OAUTHBEARER token');
      return done();
    }
    if (!args.length) {
      this._nextHandler = (raw: Buffer | string, next: Done) => token.call(this, true, raw, next);
      this.send(334);
      return done();
    }
    token.call(this, false, args[0]!, done);
  };
}

