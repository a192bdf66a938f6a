// Owns one bounded HTTPS request to an identity provider (JWKS document, RFC 7662 introspection): internal CA, deadline, size cap.
// Must not retry, cache or interpret the answer; network trouble becomes ProxyError IDP_UNAVAILABLE, never a raw error.
import https from 'node:https';
import { ProxyError } from '../errors.js';

export interface HttpsRequest {
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** PEM CA bundle; system CAs when unset. */
  ca?: string;
  timeoutMs: number;
  maxBytes?: number;
}

export interface HttpsResponse {
  status: number;
  contentType: string;
  body: Buffer;
}

const DEFAULT_MAX_BYTES = 1024 * 1024;

/** Send one request; resolves with any HTTP status, rejects only with IDP_UNAVAILABLE (connect, TLS, deadline, oversize). */
export function httpsRequest(url: string, req: HttpsRequest): Promise<HttpsResponse> {
  const max = req.maxBytes ?? DEFAULT_MAX_BYTES;
  const where = safeUrl(url);
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (detail: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      r.destroy();
      reject(new ProxyError('IDP_UNAVAILABLE', `${where}: ${detail}`));
    };
    const headers: Record<string, string> = { ...req.headers };
    if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body));
    const r = https.request(url, { method: req.method, headers, ...(req.ca ? { ca: req.ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > max) return fail(`answer larger than ${max} bytes`);
        chunks.push(c);
      });
      res.on('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks) });
      });
    });
    const timer = setTimeout(() => fail(`no answer within ${req.timeoutMs} ms`), req.timeoutMs);
    r.on('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
    r.end(req.body);
  });
}

/** The URL without credentials or query, for log lines. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}
