// Owns the V8 heap settings a started proxy applies to itself: the cap on the young generation (new space).
// Must not touch sessions or config; it only reads V8's heap figures and sets V8's growth flag.
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

/**
 * The new space's cap, bytes (two semi-spaces of 4 MiB, what `--max-semi-space-size=4` gives). V8 otherwise doubles it
 * after busy stretches up to 32 MiB (Node 20) or 64 MiB (Node 24) and keeps it until its memory reducer runs: after a
 * burst of logins that was 26 MB of the proxy's PSS, 5 KiB per held session of the 5,000 the benchmark holds.
 * At 4 MiB the login benchmark's CPU per session is unchanged; at 1 MiB (no growth at all) it rose 17 % and login
 * garbage promoted to the old space took back what the smaller new space saved.
 */
export const NEW_SPACE_CAP = 8 * 1024 * 1024;

/**
 * A cluster worker's cap: half, since workers exist only with `workers` ≥ 2 and each has its own new space (two
 * workers at 8 MiB held 3.5–3.7 KiB of young generation per session of the 5,000 the benchmark holds, 7.8–8.6 KiB in
 * all). The primary keeps NEW_SPACE_CAP (it relays no sessions).
 */
export const WORKER_NEW_SPACE_CAP = NEW_SPACE_CAP / 2;

/** V8's doubling factor while the new space is below the cap, 1 (no growth) once it is there. */
export function growthFactor(newSpaceBytes: number, cap: number): 1 | 2 {
  return newSpaceBytes >= cap ? 1 : 2;
}

/** True when the operator sized the young generation with V8 flags of their own (command line or NODE_OPTIONS). */
export function operatorSizedYoungGeneration(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return [...execArgv, nodeOptions ?? ''].some((a) => /semi[-_]space/.test(a));
}

function newSpaceBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

/**
 * Keep the new space at or below `cap` for the life of the process. `--max-semi-space-size` only takes effect at start,
 * so after each GC the growth factor (which V8 reads whenever it grows the new space) is set to 1 at the cap and back to
 * 2 below it (after V8 shrank it). A flag of the operator's own wins: then nothing is changed.
 */
export function capYoungGeneration(cap = NEW_SPACE_CAP): void {
  if (operatorSizedYoungGeneration(process.execArgv, process.env['NODE_OPTIONS'])) return;
  let factor = 2;
  const apply = () => {
    const next = growthFactor(newSpaceBytes(), cap);
    if (next === factor) return;
    factor = next;
    setFlagsFromString(`--semi-space-growth-factor=${next}`);
  };
  new PerformanceObserver(apply).observe({ entryTypes: ['gc'] });
}
