// Owns the world's self-signed TLS certificate (CN=localhost, SAN DNS:localhost + IP:127.0.0.1), made with openssl.
// Must not configure any server with it; callers read the returned paths.
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from './processes.js';

export interface TlsFiles {
  certPath: string;
  keyPath: string;
  /** The same self-signed certificate, as a trust anchor for clients (`ca:` option). */
  caPath: string;
}

/** Generate a P-256 key and self-signed certificate in `dir` (about 15 ms). */
export async function generateCert(openssl: string, dir: string): Promise<TlsFiles> {
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  const caPath = join(dir, 'ca.pem');
  await runCommand(openssl, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '7', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  await copyFile(certPath, caPath);
  return { certPath, keyPath, caPath };
}

/**
 * A P-256 key and self-signed certificate for `cn` with DNS SANs `names` (default: cn), valid `days` from now
 * (negative: already expired), written as `<base>.crt` / `<base>.key` in `dir`.
 */
export async function generateNamedCert(openssl: string, dir: string, base: string, cn: string, opts: { names?: string[]; days?: number } = {}): Promise<{ certPath: string; keyPath: string }> {
  const certPath = join(dir, `${base}.crt`);
  const keyPath = join(dir, `${base}.key`);
  const csr = join(dir, `${base}.csr`);
  const san = (opts.names ?? [cn]).map((n) => `DNS:${n}`).join(',');
  await runCommand(openssl, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyPath, '-out', csr, '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${san}`]);
  // `x509 -req -days N` accepts a negative N (notAfter before now): the only way to an expired certificate without a CA.
  await runCommand(openssl, ['x509', '-req', '-in', csr, '-signkey', keyPath, '-days', String(opts.days ?? 30), '-copy_extensions', 'copy', '-out', certPath]);
  return { certPath, keyPath };
}
