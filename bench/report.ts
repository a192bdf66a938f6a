// Owns formatting the benchmark's figures into one Markdown table: every target beside direct, with ratios.
// Must not measure anything.
import type { HeldFigures } from './scenarios.js';

export interface TargetResult {
  fetch: number[];
  fetchBest: number[];
  clientMBps: number[];
  fetchCpu: number[];
  backendFetchCpu: number[];
  noopCpu: number[];
  noopP50: number[];
  noopP99: number[];
  rate: number[];
  cpu: number[];
  ldap: number[];
  dovecot: number[];
  /** Interleaved login run: CPU µs per session, and its ratio to the first proxy in the same round. */
  mixCpu: number[];
  mixRatio: number[];
  held?: HeldFigures;
}

export interface Summary {
  fetchMBps: number;
  fetchBestMBps: number;
  clientCeilingMBps: number;
  proxyCpuUsPerMB: number;
  dovecotCpuUsPerMB: number;
  proxyCpuUsPerNoop: number;
  noopP50Us: number;
  noopP99Us: number;
  sessionsPerSec: number;
  proxyCpuUsPerSession: number;
  ldapCpuUsPerSession: number;
  dovecotCpuUsPerSession: number;
  interleavedCpuUsPerSession: number;
  interleavedRatio: number;
  interleavedRatioRange: number[];
  heldKiBPerSession: number;
  heldSettledKiBPerSession: number;
  held: HeldFigures | undefined;
}

const fmt = (x: number, digits = 0): string => (Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '–');

/** One row per figure; columns: direct, then each proxy variant with its ratio (or added µs for NOOP) to direct. */
export function formatTable(names: string[], s: Record<string, Summary>): string {
  const d = s['direct']!;
  const proxies = names.filter((n) => n !== 'direct');
  const rows: Array<[string, (x: Summary) => string, ((x: Summary) => string) | undefined]> = [
    ['10 MiB FETCH, MB/s (one stream)', (x) => fmt(x.fetchMBps), (x) => `${fmt(x.fetchMBps / d.fetchMBps, 2)}×`],
    ['10 MiB FETCH, best of all, MB/s', (x) => fmt(x.fetchBestMBps), (x) => `${fmt(x.fetchBestMBps / d.fetchBestMBps, 2)}×`],
    ['load client ceiling, MB/s (bytes per own CPU µs)', (x) => fmt(x.clientCeilingMBps), undefined],
    ['proxy CPU µs per MB relayed (FETCH)', (x) => fmt(x.proxyCpuUsPerMB), undefined],
    ['Dovecot CPU µs per MB sent (FETCH)', (x) => fmt(x.dovecotCpuUsPerMB), undefined],
    ['NOOP round trip p50, µs', (x) => fmt(x.noopP50Us), (x) => `+${fmt(x.noopP50Us - d.noopP50Us)}`],
    ['NOOP round trip p99, µs', (x) => fmt(x.noopP99Us), (x) => `+${fmt(x.noopP99Us - d.noopP99Us)}`],
    ['proxy CPU µs per NOOP round trip', (x) => fmt(x.proxyCpuUsPerNoop, 1), undefined],
    ['IMAP sessions/s (LOGIN+SELECT+LOGOUT, 16 concurrent)', (x) => fmt(x.sessionsPerSec), (x) => `${fmt(x.sessionsPerSec / d.sessionsPerSec, 2)}×`],
    ['proxy CPU µs per session (process tree)', (x) => fmt(x.proxyCpuUsPerSession), undefined],
    ['proxy CPU µs per session, all proxies at once, interleaved session by session (beside: ratio to the first proxy, median and range of rounds)', (x) => fmt(x.interleavedCpuUsPerSession), (x) => (x.interleavedRatioRange.length ? `${fmt(x.interleavedRatio, 2)}× (${fmt(x.interleavedRatioRange[0]!, 2)}–${fmt(x.interleavedRatioRange[1]!, 2)})` : '')],
    ['LDAP server CPU µs per session', (x) => fmt(x.ldapCpuUsPerSession), undefined],
    ['Dovecot CPU µs per session', (x) => fmt(x.dovecotCpuUsPerSession), undefined],
    ['held idle logged-in session, KiB (PSS growth, full GC before and after)', (x) => fmt(x.heldKiBPerSession, 1), undefined],
    ['held idle logged-in session, KiB (PSS growth, 3 s settled, no GC forced)', (x) => fmt(x.heldSettledKiBPerSession, 1), undefined],
    ['held session split, KiB: V8 heap (young gen, live JS) / external / native (glibc brk)', (x) => { const m = x.held?.split; return m ? `${fmt(m.v8Heap, 1)} (${fmt(m.youngGen, 1)}, ${fmt(m.liveJs, 1)}) / ${fmt(m.external, 1)} / ${fmt(m.native, 1)} (${fmt(m.brk, 1)})` : '–'; }, undefined],
    ['held sessions alive / opened in s', (x) => (x.held ? `${x.held.held} / ${fmt(x.held.openSecs, 1)}` : '–'), undefined],
  ];
  const head = ['figure', 'direct', ...proxies.flatMap((p) => [p, 'vs direct'])];
  const lines = [`| ${head.join(' | ')} |`, `|---|${head.slice(1).map(() => '---:').join('|')}|`];
  for (const [label, value, ratio] of rows) {
    const cells = [label, value(d), ...proxies.flatMap((p) => [value(s[p]!), ratio ? ratio(s[p]!) : ''])];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}
