// Owns running `openssl s_client` as a real TLS client against a proxy port: SNI, ALPN, STARTTLS, optional input.
// Must not assert; callers read the parsed result (certificate subject, ALPN, handshake alert) and the raw output.
import { spawn } from 'node:child_process';

export interface SClientOptions {
  /** SNI name to send; undefined sends none (`-noservername`). */
  servername?: string;
  /** `-alpn a,b`: protocols to offer. */
  alpn?: string[];
  /** `-starttls imap|pop3|smtp`: plaintext upgrade done by s_client. */
  starttls?: 'imap' | 'pop3' | 'smtp';
  /** Sent after the handshake; with it, s_client waits for the server to close (`-ign_eof`). */
  input?: string;
  timeoutMs?: number;
}

export interface SClientResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Common name of the certificate the server presented, undefined when the handshake failed. */
  subjectCN: string | undefined;
  /** Negotiated ALPN protocol, 'none' when not negotiated, undefined when the handshake failed. */
  alpn: string | undefined;
  /** The handshake ended with a TLS no_application_protocol alert from the server. */
  noApplicationProtocol: boolean;
}

export function sClient(openssl: string, port: number, opts: SClientOptions = {}): Promise<SClientResult> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`];
  args.push(...(opts.servername === undefined ? ['-noservername'] : ['-servername', opts.servername]));
  if (opts.alpn) args.push('-alpn', opts.alpn.join(','));
  if (opts.starttls) args.push('-starttls', opts.starttls);
  if (opts.input !== undefined) args.push('-ign_eof', '-quiet');
  return new Promise((resolve, reject) => {
    const p = spawn(openssl, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`openssl s_client ${args.join(' ')} timed out; output: ${Buffer.concat(out).toString()}${Buffer.concat(err).toString()}`)); }, opts.timeoutMs ?? 15_000);
    p.on('error', (e) => { clearTimeout(timer); reject(e); });
    p.on('close', (code) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      const all = stdout + stderr;
      // -quiet leaves the certificate out of stdout; depth lines on stderr still name the subject.
      const cn = /subject=.*?CN ?= ?([^,\n/]+)/.exec(all)?.[1] ?? /depth=0 CN ?= ?([^,\n/]+)/.exec(all)?.[1];
      const handshakeOk = /Cipher is |New, TLSv|Verification|depth=0/.test(all) && !/alert/.test(stderr);
      const alpn = /ALPN protocol: (\S+)/.exec(all)?.[1] ?? (/No ALPN negotiated/.test(all) ? 'none' : undefined);
      resolve({ code, stdout, stderr, subjectCN: handshakeOk ? cn?.trim() : undefined, alpn: handshakeOk ? alpn : undefined, noApplicationProtocol: /no application protocol/i.test(all) });
    });
    p.stdin.on('error', () => undefined);
    p.stdin.end(opts.input ?? '');
  });
}
