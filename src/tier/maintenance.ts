// Owns the pure rules of the tier-wide maintenance flags: which switch (on or off) is the latest, what Redis holds, and
// what an instance pushes back after Redis or its link to it was away. Must not talk to Redis or touch the monitor.

/** One switch of maintenance for a backend, with the time it was made (ms, the issuing instance's clock). */
export interface MaintenanceSwitch { enabled: boolean; at: number }

/** What Redis holds: backend → time maintenance was switched on / off (a switch removes the other record). */
export interface MaintenanceRecords { on: Record<string, string>; off: Record<string, string> }

/** The latest switch Redis holds for each backend (both records present after a race: the later wins, on at a tie). */
export function recordedSwitches(r: MaintenanceRecords): Map<string, MaintenanceSwitch> {
  const out = new Map<string, MaintenanceSwitch>();
  for (const [backend, at] of Object.entries(r.on)) out.set(backend, { enabled: true, at: Number(at) || 0 });
  for (const [backend, at] of Object.entries(r.off)) {
    const t = Number(at) || 0;
    const on = out.get(backend);
    if (!on || t > on.at) out.set(backend, { enabled: false, at: t });
  }
  return out;
}

/** Backends in maintenance according to Redis (its latest switches, recordedSwitches). */
export function flaggedBackends(recorded: ReadonlyMap<string, MaintenanceSwitch>): Set<string> {
  const out = new Set<string>();
  for (const [backend, s] of recorded) if (s.enabled) out.add(backend);
  return out;
}

/**
 * After Redis (or this instance's link to it) was away: the switches this instance must write. The newest switch known
 * anywhere wins, whether Redis lost its data (restarted empty) or only this instance's link was cut, so both cases take
 * one rule: the latest switch this instance knows (made here, heard or read, on or off) goes in when Redis holds nothing
 * for that backend (a restarted Redis lost the records, "off" ones too) or only an older switch of the other state (one
 * made here while Redis did not answer). A newer switch in Redis wins: an "off" made through another instance while this
 * one was cut off is not undone by the "on" this one still holds, nor a newer "on" by an older "off". Several instances
 * pushing at once after a restart are ordered by Redis (the write is refused when a switch as new is already there).
 */
export function switchesToPush(mine: ReadonlyMap<string, MaintenanceSwitch>, recorded: ReadonlyMap<string, MaintenanceSwitch>): Array<[string, MaintenanceSwitch]> {
  const out: Array<[string, MaintenanceSwitch]> = [];
  for (const [backend, s] of mine) {
    const r = recorded.get(backend);
    if (r === undefined || (s.at > r.at && s.enabled !== r.enabled)) out.push([backend, s]);
  }
  return out;
}
