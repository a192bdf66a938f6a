// Owns choosing the local address a backend connection binds to from sourceAddresses: fewest open, round-robin among equals.
// Must not connect; the caller binds with the address and calls release() when that connection closes.
export interface SourceLease { address: string; release(): void }

export class SourceAddressPicker {
  private readonly open = new Map<string, number>();
  private readonly turn = new Map<string, number>();

  /** Connections open now from `address` to `endpoint` (for tests and metrics). */
  count(endpoint: string, address: string): number { return this.open.get(`${endpoint}|${address}`) ?? 0; }

  /** A source for a new connection to `endpoint` (`host:port`); undefined when the backend has none configured. */
  pick(endpoint: string, addresses: readonly string[]): SourceLease | undefined {
    if (addresses.length === 0) return undefined;
    const start = this.turn.get(endpoint) ?? 0;
    let best = -1;
    let bestCount = Infinity;
    for (let k = 0; k < addresses.length; k++) {
      const i = (start + k) % addresses.length;
      const n = this.count(endpoint, addresses[i]!);
      if (n < bestCount) { best = i; bestCount = n; }
    }
    this.turn.set(endpoint, (best + 1) % addresses.length);
    const address = addresses[best]!;
    const key = `${endpoint}|${address}`;
    this.open.set(key, bestCount + 1);
    let released = false;
    return {
      address,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.open.get(key) ?? 1) - 1;
        if (n <= 0) this.open.delete(key); else this.open.set(key, n);
      },
    };
  }
}
