// Owns the tier's broadcast channel: admin actions (kick, maintenance, route invalidation) and view-change pings,
// validated on receipt. Must not carry out the actions itself (the composition does) nor trust what arrives.
import { z } from 'zod';
import type { Logger } from '../log.js';
import { tierBroadcastsTotal } from '../metrics.js';
import { BACKGROUND_TIMEOUT_MS, type TierClient } from './client.js';
import type { TierKeys } from './keys.js';

const name = z.string().min(1).max(512);
const actionSchema = z.discriminatedUnion('type', [
  // id and at (issue time) since kicks are replayed: applied once per instance, to sessions started before `at`.
  z.strictObject({ type: z.literal('kick'), user: name.optional(), backend: name.optional(), id: z.string().min(1).max(64).optional(), at: z.number().int().nonnegative().optional() }),
  z.strictObject({ type: z.literal('maintenance'), backend: name, enabled: z.boolean() }),
  z.strictObject({ type: z.literal('invalidate'), user: name }),
  z.strictObject({ type: z.literal('view') }),
]);
const envelopeSchema = z.strictObject({ from: z.string().max(200), at: z.number(), action: actionSchema });

export type TierAction = z.output<typeof actionSchema>;

export class TierBroadcast {
  private readonly handlers: Array<(a: TierAction, from: string, at: number) => void> = [];

  constructor(private readonly client: TierClient, private readonly keys: TierKeys, private readonly instanceId: string, private readonly logger: Logger) {}

  /** Called for every valid action another instance sent (`at`: when it was sent, the sender's clock). */
  onAction(fn: (a: TierAction, from: string, at: number) => void): void { this.handlers.push(fn); }

  start(): void {
    this.client.subscribe(this.keys.channel, (text) => this.receive(text));
  }

  /** The message text of an action from this instance. */
  encode(action: TierAction): string { return JSON.stringify({ from: this.instanceId, at: Date.now(), action }); }

  /** Publish to the other instances; false when Redis did not take it (the caller already acted locally). */
  async send(action: TierAction): Promise<boolean> {
    const text = this.encode(action);
    const n = await this.client.run('broadcast', (r) => r.publish(this.keys.channel, text), { timeoutMs: BACKGROUND_TIMEOUT_MS, evenIfDown: true });
    if (n === undefined) return false;
    tierBroadcastsTotal.inc({ type: action.type, direction: 'sent' });
    return true;
  }

  private receive(text: string): void {
    let parsed: unknown;
    try { parsed = JSON.parse(text); } catch { parsed = undefined; }
    const r = envelopeSchema.safeParse(parsed);
    if (!r.success) {
      this.logger.warn({ event: 'tier_message_invalid', bytes: text.length }, 'ignoring an invalid tier message');
      return;
    }
    if (r.data.from === this.instanceId) return;
    tierBroadcastsTotal.inc({ type: r.data.action.type, direction: 'received' });
    if (r.data.action.type !== 'view') this.logger.info({ event: 'tier_action', from: r.data.from, action: r.data.action }, 'tier action received');
    for (const h of this.handlers) h(r.data.action, r.data.from, r.data.at);
  }
}
