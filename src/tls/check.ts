// Owns checking the client-facing TLS files of a Config: readable, parseable, key matches certificate, validity dates.
// Must not build TLS contexts or keep state; it returns problems (refuse to start/reload) and warnings (log, go on).
import { readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { Config } from '../config/schema.js';

const DAY_MS = 86_400_000;

/** One certificate/key pair as configured: its config key (`tls`, `tls.sni[1]`), files, and what they contain. */
export interface CertificateFiles {
  /** Config path of the pair, used in every message: `tls` or `tls.sni[N]`. */
  key: string;
  /** Operator's name for it (`name:`), else the certificate's CN; the metric label. */
  name: string;
  /** Server names this pair answers for (SNI); empty for the default. */
  names: string[];
  certFile: string;
  keyFile: string;
  cert: Buffer;
  privateKey: Buffer;
  notAfter: number;
  notBefore: number;
}

export interface TlsFileReport {
  /** Fatal: the pair cannot be served (missing file, bad PEM, key mismatch, expired). */
  problems: string[];
  /** Worth a log line: expiring within tls.expiryWarningDays, not valid yet. */
  warnings: string[];
  /** Pairs that passed every fatal check, default first. */
  pairs: CertificateFiles[];
}

function readPem(path: string, key: string, problems: string[]): Buffer | undefined {
  try { return readFileSync(path); } catch (e) {
    const err = e as NodeJS.ErrnoException;
    problems.push(`${key}: ${err.code ?? err.message} ${path}`);
    return undefined;
  }
}

function commonName(cert: X509Certificate): string | undefined {
  const m = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject);
  return m?.[1];
}

/** The configured pairs, default first, as (config key, entry). */
export function configuredPairs(tls: NonNullable<Config['tls']>): Array<{ key: string; certFile: string; keyFile: string; name?: string | undefined; names: string[] }> {
  return [
    { key: 'tls', certFile: tls.certFile, keyFile: tls.keyFile, name: tls.name, names: [] },
    ...tls.sni.map((s, i) => ({ key: `tls.sni[${i}]`, certFile: s.certFile, keyFile: s.keyFile, name: s.name, names: s.names })),
  ];
}

/**
 * Check every TLS file of `config` at time `now`. Each message names the config key and the file, e.g.
 * `tls.sni[1].keyFile: ENOENT /etc/ssl/x.key`. No `tls` section: nothing to check.
 */
export function checkTlsFiles(config: Pick<Config, 'tls'>, now = Date.now()): TlsFileReport {
  const report: TlsFileReport = { problems: [], warnings: [], pairs: [] };
  const tls = config.tls;
  if (!tls) return report;
  const warnMs = tls.expiryWarningDays * DAY_MS;
  for (const p of configuredPairs(tls)) {
    const problems: string[] = [];
    const certPem = readPem(p.certFile, `${p.key}.certFile`, problems);
    const keyPem = readPem(p.keyFile, `${p.key}.keyFile`, problems);
    let x509: X509Certificate | undefined;
    if (certPem) {
      try { x509 = new X509Certificate(certPem); } catch (e) { problems.push(`${p.key}.certFile: not a PEM certificate (${(e as Error).message}) ${p.certFile}`); }
    }
    let privateKey: ReturnType<typeof createPrivateKey> | undefined;
    if (keyPem) {
      try { privateKey = createPrivateKey(keyPem); } catch (e) { problems.push(`${p.key}.keyFile: not a PEM private key (${(e as Error).message}) ${p.keyFile}`); }
    }
    if (x509 && privateKey && !x509.checkPrivateKey(privateKey)) {
      problems.push(`${p.key}.keyFile: key does not match the certificate in ${p.key}.certFile (${p.certFile}) ${p.keyFile}`);
    }
    if (x509) {
      const notAfter = Date.parse(x509.validTo);
      const notBefore = Date.parse(x509.validFrom);
      const days = Math.floor((notAfter - now) / DAY_MS);
      if (notAfter <= now) problems.push(`${p.key}.certFile: certificate expired ${new Date(notAfter).toISOString()} ${p.certFile}`);
      else if (notAfter - now <= warnMs) report.warnings.push(`${p.key}.certFile: certificate expires in ${days} days (${new Date(notAfter).toISOString()}) ${p.certFile}`);
      if (notBefore > now) report.warnings.push(`${p.key}.certFile: certificate not valid before ${new Date(notBefore).toISOString()} ${p.certFile}`);
      if (!problems.length && certPem && keyPem) {
        report.pairs.push({
          key: p.key, name: p.name ?? commonName(x509) ?? p.key, names: p.names,
          certFile: p.certFile, keyFile: p.keyFile, cert: certPem, privateKey: keyPem, notAfter, notBefore,
        });
      }
    }
    report.problems.push(...problems);
  }
  // Two unnamed certificates with one CN would share a metric series: the later ones get their config key appended.
  const seen = new Set<string>();
  for (const p of report.pairs) {
    if (seen.has(p.name)) p.name = `${p.name} ${p.key}`;
    seen.add(p.name);
  }
  return report;
}

/**
 * The hook for `check-config` and `start`: writes every problem and warning (one line each, naming the config key)
 * and returns false when a TLS file cannot be served.
 */
export function reportTlsFiles(config: Pick<Config, 'tls'>, write: (line: string) => void, now = Date.now()): boolean {
  const { problems, warnings } = checkTlsFiles(config, now);
  for (const p of problems) write(`error: ${p}`);
  for (const w of warnings) write(`warning: ${w}`);
  return problems.length === 0;
}
