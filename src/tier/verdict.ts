// Owns the tier's verdict on one backend endpoint from the instances' published probe evidence (pure, unit-tested).
// Must not do I/O or read clocks; callers pass `now`, the live instances and the quorum.

/** What one instance published about one endpoint: its own health state and when it last probed it. */
export interface Evidence {
  instance: string;
  /** The instance's local health state (maintenance is broadcast separately and is no evidence). */
  health: 'unknown' | 'up' | 'suspect' | 'down';
  /** When the instance last probed the endpoint (ms since epoch). */
  at: number;
}

export interface Verdict {
  down: boolean;
  /** Live instances with fresh, definite evidence (up, suspect or down). */
  observers: number;
  downVotes: number;
  /** Down votes the quorum asks for (with these observers). */
  needed: number;
}

export type Quorum = 'majority' | number;

/**
 * Down when at least `needed` live instances with fresh evidence see the endpoint down, where `needed` is a majority
 * of those observers (or the fixed quorum). An instance abstains when it is not live (no recent heartbeat), its last
 * probe is older than `maxAgeMs`, or it has not decided (unknown). So one instance's own network fault cannot take a
 * backend away from the tier while others see it up, and a lone prober (the others not probing it) decides alone.
 */
export function tierVerdict(evidence: readonly Evidence[], live: ReadonlySet<string>, quorum: Quorum, maxAgeMs: number, now: number): Verdict {
  const seen = new Set<string>();
  let observers = 0;
  let downVotes = 0;
  for (const e of evidence) {
    if (!live.has(e.instance) || seen.has(e.instance)) continue;
    if (e.health === 'unknown' || now - e.at > maxAgeMs) continue;
    seen.add(e.instance);
    observers++;
    if (e.health === 'down') downVotes++;
  }
  const needed = quorum === 'majority' ? Math.floor(observers / 2) + 1 : quorum;
  return { down: observers > 0 && downVotes >= needed, observers, downVotes, needed };
}
