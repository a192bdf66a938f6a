// Owns a light cancellation flag with abort listeners, for the login path's own cancellations (a hedged LDAP request,
// a login whose client left). Must not do I/O; it replaces AbortController where only `aborted` and listeners are used.

/** What the login path reads from a cancellation: an AbortSignal satisfies it too (tests and other callers pass one). */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * An AbortController without the EventTarget: creating an AbortSignal, adding and removing a listener and aborting
 * cost several µs each (an aborted AbortController 15–30 µs), and a login used to pay that two or three times.
 * Listeners run once, in the order added; each is removed after it runs.
 */
export class Cancel implements CancelSignal {
  aborted = false;
  private listeners: Array<() => void> | undefined;

  addEventListener(_type: 'abort', listener: () => void, _options?: { once?: boolean }): void {
    if (this.aborted) return;
    (this.listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const at = this.listeners?.indexOf(listener) ?? -1;
    if (at >= 0) this.listeners!.splice(at, 1);
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const run = this.listeners;
    this.listeners = undefined;
    for (const l of run ?? []) l();
  }
}
