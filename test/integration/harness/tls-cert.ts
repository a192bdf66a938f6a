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
