// Owns the operator hooks run on backend state changes: a shell command (state in its environment) and a JSON webhook.
// Must never block or throw into the proxy: every hook runs detached with a timeout, failures are only logged.
import { spawn } from 'node:child_process';
import type { HealthConfig } from '../config/schema.js';
import { sanitize } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';

export interface HookEvent {
  instance: string;
  backend: string;
  /** Set for endpoint-level events; backend-level events (the ones hooks get by default) leave it out. */
  protocol?: string;
  from: string;
  to: string;
  reason: string;
  at: number;
}

/** The environment of the hook command: the parent's plus the MAILPROXY_* variables. */
export function buildHookEnv(ev: HookEvent, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {
    ...base,
    MAILPROXY_INSTANCE: ev.instance,
    MAILPROXY_BACKEND: ev.backend,
    MAILPROXY_PROTOCOL: ev.protocol ?? '',
    MAILPROXY_OLD_STATE: ev.from,
    MAILPROXY_NEW_STATE: ev.to,
    MAILPROXY_REASON: sanitize(ev.reason, 200),
    MAILPROXY_AT: new Date(ev.at).toISOString(),
  };
}

/** The webhook's JSON body. */
export function buildWebhookBody(ev: HookEvent): string {
  return JSON.stringify({ event: 'backend_state', instance: ev.instance, backend: ev.backend, ...(ev.protocol ? { protocol: ev.protocol } : {}), from: ev.from, to: ev.to, reason: ev.reason, at: new Date(ev.at).toISOString() });
}

export interface HookRunnerOptions {
  hooks: HealthConfig['hooks'];
  logger?: Logger;
  /** Injected for tests; defaults to the global fetch. */
  fetch?: typeof fetch;
  shell?: string;
}

/** Events per backend waiting behind a running hook; beyond this the oldest are dropped (and logged). */
const MAX_QUEUED = 16;

export class HookRunner {
  private readonly chains = new Map<string, { tail: Promise<void>; queued: number }>();
  private readonly log: Logger;

  constructor(private readonly opts: HookRunnerOptions) {
    this.log = opts.logger ?? silentLogger;
  }

  get enabled(): boolean { return !!(this.opts.hooks.command || this.opts.hooks.webhookUrl); }

  /**
   * Run the hooks for one event without waiting. Events of one backend run in order (a quick down→up
   * must not reach the operator as up→down); the returned promise is for tests and never rejects.
   */
  fire(ev: HookEvent): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    const chain = this.chains.get(ev.backend) ?? { tail: Promise.resolve(), queued: 0 };
    this.chains.set(ev.backend, chain);
    if (chain.queued >= MAX_QUEUED) {
      this.log.warn({ event: 'hook_dropped', backend: ev.backend, from: ev.from, to: ev.to }, 'hook queue full, event dropped');
      return chain.tail;
    }
    chain.queued++;
    const next = chain.tail.then(() => this.runAll(ev)).catch(() => undefined).finally(() => { chain.queued--; });
    chain.tail = next;
    return next;
  }

  private async runAll(ev: HookEvent): Promise<void> {
    const { command, webhookUrl } = this.opts.hooks;
    await Promise.all([
      command ? this.runCommand(command, ev) : undefined,
      webhookUrl ? this.postWebhook(webhookUrl, ev) : undefined,
    ]);
  }

  /** Resolves when the command exits or is killed at the timeout; never rejects. */
  runCommand(command: string, ev: HookEvent): Promise<void> {
    const timeoutMs = this.opts.hooks.timeoutMs;
    const started = Date.now();
    return new Promise((resolve) => {
      let stderr = '';
      let timedOut = false;
      let child: ReturnType<typeof spawn>;
      try {
        child = spawn(this.opts.shell ?? '/bin/sh', ['-c', command], { env: buildHookEnv(ev), stdio: ['ignore', 'ignore', 'pipe'], detached: true });
      } catch (e) {
        this.log.warn({ event: 'hook_failed', kind: 'command', backend: ev.backend, err: errText(e) }, 'hook command could not start');
        resolve();
        return;
      }
      child.stderr?.on('data', (d: Buffer) => { if (stderr.length < 1000) stderr += d.toString('utf8'); });
      // Kill the whole process group: `sh -c` may have started children that would outlive it.
      const timer = setTimeout(() => {
        timedOut = true;
        try { process.kill(-child.pid!, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
      }, timeoutMs);
      timer.unref();
      child.on('error', (e) => {
        clearTimeout(timer);
        this.log.warn({ event: 'hook_failed', kind: 'command', backend: ev.backend, err: errText(e) }, 'hook command failed');
        resolve();
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const ms = Date.now() - started;
        if (code === 0) this.log.info({ event: 'hook_ran', kind: 'command', backend: ev.backend, to: ev.to, ms }, 'hook command ran');
        else this.log.warn({ event: 'hook_failed', kind: 'command', backend: ev.backend, to: ev.to, code, signal, timedOut, ms, stderr: sanitize(stderr, 300) }, timedOut ? 'hook command timed out' : 'hook command failed');
        resolve();
      });
    });
  }

  /** POST the event as JSON; resolves on any outcome. */
  async postWebhook(url: string, ev: HookEvent): Promise<void> {
    const started = Date.now();
    try {
      const res = await (this.opts.fetch ?? fetch)(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'mailproxy-health-hook' },
        body: buildWebhookBody(ev),
        signal: AbortSignal.timeout(this.opts.hooks.timeoutMs),
      });
      await res.arrayBuffer().catch(() => undefined);
      const ms = Date.now() - started;
      if (res.ok) this.log.info({ event: 'hook_ran', kind: 'webhook', backend: ev.backend, to: ev.to, status: res.status, ms }, 'webhook posted');
      else this.log.warn({ event: 'hook_failed', kind: 'webhook', backend: ev.backend, to: ev.to, status: res.status, ms }, 'webhook answered an error');
    } catch (e) {
      this.log.warn({ event: 'hook_failed', kind: 'webhook', backend: ev.backend, to: ev.to, err: errText(e), ms: Date.now() - started }, 'webhook failed');
    }
  }
}

function errText(e: unknown): string {
  return sanitize(e instanceof Error ? `${e.name}: ${e.message}` : String(e), 200);
}
