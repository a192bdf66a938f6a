// Owns running a protocol's sans-I/O BackendLogin machine against a real backend connection under one budget.
// Must not decide anything protocol-specific; it moves lines and TLS upgrades, and hands back the logged-in socket.
import type { Socket } from 'node:net';
import { ProxyError, toProxyError } from '../errors.js';
import type { Route } from '../directory/backends.js';
import type { BackendAction, BackendLoginContext, ProtocolModule } from './protocol.js';
import { connectBackend } from './backend-connect.js';
import type { BackendGuard } from './backend-guard.js';
import { LineReader } from './line-reader.js';
import { upgradeClient } from './starttls.js';

export interface LoggedIn {
  socket: Socket;
  /** The backend's final login reply without tag, for the client dialogue. */
  text: string;
  /** Backend bytes received after that reply. */
  leftover: Buffer;
}

export interface BackendLoginOptions {
  budgetMs: number;
  connectTimeoutMs: number;
  /** Abort (client went away, deadline passed). */
  signal?: AbortSignal;
  /** Loop protection and sourceAddresses of this instance. */
  guard?: BackendGuard;
}

const MAX_BACKEND_LINE = 64 * 1024;

export async function loginToBackend(module: ProtocolModule, route: Route, ctx: BackendLoginContext, opts: BackendLoginOptions): Promise<LoggedIn> {
  const deadline = performance.now() + opts.budgetMs;
  const proxyFor = route.trustsProxy && route.forwardClientAddress === 'proxy-v2' ? ctx.client : undefined;
  const first = await connectBackend(route, { timeoutMs: Math.min(opts.connectTimeoutMs, opts.budgetMs), ...(proxyFor ? { proxyFor, clientTls: ctx.clientTls === true } : {}), ...(opts.guard ? { guard: opts.guard } : {}) });
  const machine = module.createBackendLogin(ctx);
  return new Promise<LoggedIn>((resolve, reject) => {
    let socket = first;
    let settled = false;
    let upgrading = false;
    const reader = new LineReader(MAX_BACKEND_LINE);
    const remaining = Math.max(1, deadline - performance.now());
    const timer = setTimeout(() => fail(new ProxyError('BACKEND_UNAVAILABLE', `backend login did not finish within ${opts.budgetMs} ms`)), remaining);
    const onAbort = () => fail(new ProxyError('BACKEND_UNAVAILABLE', 'aborted'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    const detach = () => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onError);
    };
    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      detach();
      socket.destroy();
      reject(toProxyError(e, 'BACKEND_PROTOCOL'));
    };
    const onClose = () => fail(new ProxyError('BACKEND_UNAVAILABLE', 'backend closed the connection during login'));
    const onError = (e: NodeJS.ErrnoException) => fail(new ProxyError('BACKEND_UNAVAILABLE', `backend socket: ${e.code ?? e.message}`));
    const onData = (chunk: Buffer | null) => {
      try {
        let line = reader.pushOne(chunk);
        while (line !== null && !settled && !upgrading) {
          run(machine.step({ kind: 'line', line }));
          if (settled || upgrading) break;
          line = reader.pushOne(null);
        }
      } catch (e) { fail(toProxyError(e, 'BACKEND_PROTOCOL')); }
    };
    const run = (actions: BackendAction[]) => {
      for (const a of actions) {
        if (settled) return;
        switch (a.kind) {
          case 'send': socket.write(a.bytes); break;
          case 'fail': fail(a.error); return;
          case 'done': {
            settled = true;
            detach();
            socket.pause();
            resolve({ socket, text: a.text, leftover: reader.rest() });
            return;
          }
          case 'start-tls': {
            upgrading = true;
            socket.off('data', onData);
            socket.off('close', onClose);
            reader.rest(); // RFC 3501 §6.2.1: nothing the server sent before the handshake counts afterwards
            upgradeClient(socket, route, Math.max(1, deadline - performance.now()))
              .then((tls) => {
                if (settled) { tls.destroy(); return; }
                socket.off('error', onError);
                socket = tls;
                upgrading = false;
                socket.on('data', onData).on('close', onClose).on('error', onError);
                run(machine.step({ kind: 'tls-ready' }));
              }, fail);
            return;
          }
        }
      }
    };
    socket.on('data', onData).on('close', onClose).on('error', onError);
  });
}
