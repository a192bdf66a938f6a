// Proves the operator hooks: environment, ordering, timeouts, webhook body; failures never throw.
// Runs real /bin/sh children in a temp folder; the webhook uses an injected fetch.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildHookEnv, buildWebhookBody, HookRunner, type HookEvent } from '../../../src/health/hooks.js';

const ev: HookEvent = { instance: 'px1', backend: 'backend-a', protocol: 'imap', from: 'up', to: 'down', reason: 'imap: probe failed: ECONNREFUSED\n(2/2)', at: Date.UTC(2026, 0, 2, 3, 4, 5) };

describe('health/hooks', () => {
  let dir: string;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'mailproxy-hooks-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('builds the command environment from the event (sanitised) on top of the parent env', () => {
    const env = buildHookEnv(ev, { PATH: '/bin', HOME: '/root' });
    assert.equal(env.PATH, '/bin');
    assert.equal(env.MAILPROXY_BACKEND, 'backend-a');
    assert.equal(env.MAILPROXY_OLD_STATE, 'up');
    assert.equal(env.MAILPROXY_NEW_STATE, 'down');
    assert.equal(env.MAILPROXY_REASON, 'imap: probe failed: ECONNREFUSED?(2/2)');
    assert.equal(env.MAILPROXY_PROTOCOL, 'imap');
    assert.equal(env.MAILPROXY_INSTANCE, 'px1');
    assert.equal(env.MAILPROXY_AT, '2026-01-02T03:04:05.000Z');
    assert.equal(buildHookEnv((({ protocol: _p, ...rest }) => rest)(ev), {}).MAILPROXY_PROTOCOL, '');
  });

  it('builds the webhook body', () => {
    assert.deepEqual(JSON.parse(buildWebhookBody(ev)), { event: 'backend_state', instance: 'px1', backend: 'backend-a', protocol: 'imap', from: 'up', to: 'down', reason: ev.reason, at: '2026-01-02T03:04:05.000Z' });
  });

  it('runs the command with the env (events of one backend in order)', async () => {
    const out = join(dir, 'env.txt');
    const r = new HookRunner({ hooks: { command: `echo "$MAILPROXY_BACKEND $MAILPROXY_OLD_STATE $MAILPROXY_NEW_STATE" >> ${out}; sleep 0.05`, timeoutMs: 5000 } });
    const a = r.fire(ev);
    const b = r.fire({ ...ev, from: 'down', to: 'up' });
    await Promise.all([a, b]);
    assert.equal(await readFile(out, 'utf8'), 'backend-a up down\nbackend-a down up\n');
  });

  it('a failing, missing or hanging command never throws and is killed at the timeout', async () => {
    const fail = new HookRunner({ hooks: { command: 'exit 3', timeoutMs: 1000 } });
    await fail.fire(ev);
    const missing = new HookRunner({ hooks: { command: 'true', timeoutMs: 1000 }, shell: '/nonexistent/sh' });
    await missing.fire(ev);
    const started = Date.now();
    const hang = new HookRunner({ hooks: { command: 'sleep 30 & sleep 30', timeoutMs: 200 } });
    await hang.fire(ev);
    assert.ok(Date.now() - started < 3000, 'killed at the timeout');
  });

  it('posts the webhook JSON with a timeout; errors and HTTP failures are swallowed', async () => {
    const calls: Array<{ url: string; init: RequestInit }> = [];
    const okFetch = (async (url: string, init: RequestInit) => { calls.push({ url, init }); return new Response('ok', { status: 200 }); }) as unknown as typeof fetch;
    await new HookRunner({ hooks: { webhookUrl: 'http://hook.invalid/x', timeoutMs: 100 }, fetch: okFetch }).fire(ev);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.init.method, 'POST');
    assert.ok(calls[0]!.init.signal instanceof AbortSignal);
    assert.equal(JSON.parse(calls[0]!.init.body as string).to, 'down');
    const errFetch = (async () => { throw new TypeError('fetch failed'); }) as unknown as typeof fetch;
    await new HookRunner({ hooks: { webhookUrl: 'http://x', timeoutMs: 100 }, fetch: errFetch }).fire(ev);
    const badFetch = (async () => new Response('no', { status: 500 })) as unknown as typeof fetch;
    await new HookRunner({ hooks: { webhookUrl: 'http://x', timeoutMs: 100 }, fetch: badFetch }).fire(ev);
  });

  it('does nothing when no hook is configured', async () => {
    const r = new HookRunner({ hooks: { timeoutMs: 100 } });
    assert.equal(r.enabled, false);
    await r.fire(ev);
  });
});
