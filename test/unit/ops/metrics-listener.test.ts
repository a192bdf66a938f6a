// Proves the metrics-only listener: /metrics and /healthz without a token, nothing else reachable.
// Must not start the proxy (the admin HTTP tests cover the token-protected API).
import assert from 'node:assert/strict';
import { startMetricsListener } from '../../../src/ops/metrics-listener.js';
import { silentLogger } from '../../../src/log.js';

describe('ops/metrics-listener', () => {
  it('serves /metrics and /healthz without a token; everything else is 404 or 405', async () => {
    const l = await startMetricsListener({ address: '127.0.0.1', port: 0, logger: silentLogger, metrics: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'mailproxy_up 1\n' }) });
    try {
      const base = `http://127.0.0.1:${l.port}`;
      const m = await fetch(`${base}/metrics`);
      assert.equal(m.status, 200);
      assert.equal(await m.text(), 'mailproxy_up 1\n');
      assert.match(m.headers.get('content-type') ?? '', /version=0\.0\.4/);
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      for (const path of ['/sessions', '/backends', '/readyz', '/']) assert.equal((await fetch(`${base}${path}`)).status, 404, path);
      assert.equal((await fetch(`${base}/sessions/kick`, { method: 'POST', body: '{"user":"alice"}' })).status, 405);
    } finally {
      await l.close();
    }
  });

  it('answers 500 (and logs) when the metrics cannot be gathered', async () => {
    const l = await startMetricsListener({ address: '127.0.0.1', port: 0, logger: silentLogger, metrics: async () => { throw new Error('worker gone'); } });
    try {
      assert.equal((await fetch(`http://127.0.0.1:${l.port}/metrics`)).status, 500);
    } finally {
      await l.close();
    }
  });
});
