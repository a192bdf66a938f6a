// Owns the composition of the tier module: one client, the keys, presence and the typed operations (penalty, sessions
// with limits, broadcast, backend view) for one process. Must not be imported when `tier:` is absent (nothing changes then).
import { hostname } from 'node:os';
import type { TierConfig } from '../config/tier-schema.js';
import type { Logger } from '../log.js';
import { AuthPenalty } from '../proxy/auth-penalty.js';
import { TierBackendView, type BackendViewEvents, type BackendViewSource } from './backend-view.js';
import { TierBroadcast } from './broadcast.js';
import { TierClient } from './client.js';
import { TierKeys } from './keys.js';
import { TierKicks } from './kicks.js';
import { TierPenalty } from './penalty.js';
import { makeInstanceId, TierPresence } from './presence.js';
import { TierSessions } from './sessions.js';

export interface TierOptions {
  config: TierConfig;
  logger: Logger;
  /**
   * 'instance' speaks for the instance (heartbeat, broadcast, backend view) besides the login-path operations: a single
   * process or a cluster primary. 'worker': login-path operations only (penalty, limits, registry) under the id its
   * primary gave it.
   */
  role: 'instance' | 'worker';
  /** The instance id (name#epoch); a worker gets its primary's. Default: a new id for tier.instanceName or the host name. */
  instanceId?: string;
}

/** What the login path uses of the tier. */
export type TierLogin = Pick<Tier, 'penalty' | 'sessions'>;

/** The instance's stable name in the tier. */
export function tierInstanceName(c: TierConfig): string {
  return c.instanceName ?? (hostname().replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64) || 'mailproxy');
}

export class Tier {
  readonly client: TierClient;
  readonly keys: TierKeys;
  readonly presence: TierPresence;
  readonly penalty: TierPenalty;
  readonly sessions: TierSessions;
  readonly broadcast: TierBroadcast;
  readonly kicks: TierKicks;
  readonly instanceId: string;
  private view: TierBackendView | undefined;
  private readonly log: Logger;

  constructor(private readonly opts: TierOptions) {
    this.log = opts.logger.child({ module: 'tier' });
    this.instanceId = opts.instanceId ?? makeInstanceId(tierInstanceName(opts.config));
    this.keys = new TierKeys(opts.config.keyPrefix);
    this.client = new TierClient({ config: opts.config, logger: this.log, name: `mailproxy-${this.instanceId.replace(/[^A-Za-z0-9._#-]/g, '_')}` });
    this.presence = new TierPresence(this.client, this.keys, this.instanceId);
    this.penalty = new TierPenalty(this.client, this.keys, new AuthPenalty());
    this.sessions = new TierSessions(this.client, this.keys, this.presence);
    this.broadcast = new TierBroadcast(this.client, this.keys, this.instanceId, this.log);
    this.kicks = new TierKicks(this.client, this.keys, this.broadcast, this.instanceId, this.log);
  }

  get role(): TierOptions['role'] { return this.opts.role; }
  get isUp(): boolean { return this.client.isUp; }
  get backendView(): TierBackendView | undefined { return this.view; }

  /** The instance role's shared backend view (before start). */
  attachBackendView(source: BackendViewSource, events: BackendViewEvents): TierBackendView {
    this.view = new TierBackendView(this.client, this.keys, this.presence, this.broadcast, source, events, this.log);
    return this.view;
  }

  start(): void {
    this.client.start();
    this.sessions.start();
    if (this.opts.role === 'instance') {
      this.presence.start();
      this.broadcast.start();
      this.kicks.start();
      this.view?.start();
    }
    this.log.info({ event: 'tier_start', instance: this.instanceId, role: this.opts.role, redis: describeRedis(this.opts.config) }, 'tier starting');
  }

  async close(): Promise<void> {
    this.view?.stop();
    this.kicks.stop();
    this.sessions.stop();
    if (this.opts.role === 'instance') await this.presence.stop();
    await this.client.close();
  }
}

function describeRedis(c: TierConfig): string {
  const r = c.redis;
  if (r.sentinel) return `sentinel ${r.sentinel.name} via ${r.sentinel.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`;
  return `${r.host}:${r.port}${r.tls ? ' (TLS)' : ''}`;
}
