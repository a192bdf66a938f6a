// Owns what the pre-login dialogues (IMAP, POP3, ManageSieve) keep alike: the action buffer (reply text in one send) and the pre-login counters.
// Must not know any protocol's replies, grammar or close reasons, nor do I/O.
import type { LimitsConfig } from '../config/schema.js';
import type { ClientAction } from './protocol.js';

/** Base of a dialogue: `send` adds reply text, `emit` queues an action after the text so far, `flush` hands all over. */
export abstract class ActionBuffer {
  private pendingText = '';
  private queued: ClientAction[] = [];

  protected send(text: string): void {
    this.pendingText += text;
  }

  protected emit(action: ClientAction): void {
    if (this.pendingText) this.queued.push({ kind: 'send', bytes: this.pendingText });
    this.pendingText = '';
    this.queued.push(action);
  }

  protected flush(): ClientAction[] {
    if (this.pendingText) this.queued.push({ kind: 'send', bytes: this.pendingText });
    const out = this.queued;
    this.queued = [];
    this.pendingText = '';
    return out;
  }
}

/** Pre-login counters: each call counts one event and says whether the connection has now reached its limit. */
export class PreLoginCounters {
  private badCommands = 0;
  private authFailures = 0;

  constructor(private readonly limits: Pick<LimitsConfig, 'maxBadCommands' | 'maxAuthAttempts'>) {}

  /** A command the proxy rejected itself; true at `maxBadCommands`. */
  badCommand(): boolean {
    return ++this.badCommands >= this.limits.maxBadCommands;
  }

  /** A failed login; true at `maxAuthAttempts`. */
  authFailure(): boolean {
    return ++this.authFailures >= this.limits.maxAuthAttempts;
  }
}
