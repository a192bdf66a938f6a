// Proves the HAProxy agent-check responder and the `mailproxy status` command (table, exit codes).
// Uses loopback servers only.
import assert from 'node:assert/strict';
import net from 'node:net';
import { agentReply, startAgentCheck } from '../../../src/ops/agent-check.js';
import type { BackendSnapshot } from '../../../src/health/health.js';
import { startAdminServer, type AdminDeps, type Readiness } from '../../../src/ops/http.js';
import { adminBaseUrl, exitCodeFor, formatTable, runStatus } from '../../../src/ops/status.js';
import { testConfig } from '../health/helpers.js';

function readLine(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const s = net.connect(port, '127.0.0.1');
    s.setEncoding('utf8');
    s.on('data', (d: string) => { buf += d; });
    s.on('end', () => resolve(buf));
    s.on('error', reject);
  });
}

const NOW = Date.parse('2026-03-01T12:00:00Z');
function backend(name: string, state: BackendSnapshot['state'], endpointStates: BackendSnapshot['state'][] = [state]): BackendSnapshot {
  return {
    backend: name, state, since: '2026-03-01T11:59:00Z', maintenance: state === 'maintenance', sessions: 2,
    endpoints: endpointStates.map((s, i) => ({ protocol: (['imap', 'pop3'] as const)[i]!, state: s, health: s === 'maintenance' ? 'up' : s, since: '2026-03-01T11:00:00Z', lastProbe: { ok: s !== 'down', at: '2026-03-01T11:59:58Z', latencyMs: 4, ...(s === 'down' ? { failure: 'connect', error: 'ECONNREFUSED' } : { identity: 'Dovecot ready.' }) } })),
  };
}

describe('health/agent-check', () => {
  it('answers up with weight, drain while draining or in maintenance, down when not ready', () => {
    const r = (x: Partial<Readiness>): Readiness => ({ ready: true, reasons: [], ...x });
    assert.equal(agentReply(r({})), 'up ready 100%\n');
    assert.equal(agentReply(r({}), 50), 'up ready 50%\n');
    assert.equal(agentReply(r({ ready: false, draining: true, reasons: ['draining'] })), 'drain\n');
    assert.equal(agentReply(r({ maintenance: true })), 'drain\n');
    assert.equal(agentReply(r({ ready: false, reasons: ['listeners not bound'] })), 'down\n');
  });

  it('serves one line per connection on a TCP port and closes', async () => {
    let readiness: Readiness = { ready: true, reasons: [] };
    const agent = await startAgentCheck({ address: '127.0.0.1', port: 0, readiness: () => readiness });
    try {
      assert.equal(await readLine(agent.port), 'up ready 100%\n');
      readiness = { ready: false, reasons: ['draining'], draining: true };
      assert.equal(await readLine(agent.port), 'drain\n');
      const broken = await startAgentCheck({ address: '127.0.0.1', port: 0, readiness: () => { throw new Error('boom'); } });
      assert.equal(await readLine(broken.port), 'down\n');
      await broken.close();
    } finally { await agent.close(); }
  });
});

describe('health/status', () => {
  it('exit code: 0 all up, 1 something not up, 2 any endpoint down', () => {
    assert.equal(exitCodeFor([backend('a', 'up'), backend('b', 'up')]), 0);
    assert.equal(exitCodeFor([backend('a', 'up'), backend('b', 'maintenance')]), 1);
    assert.equal(exitCodeFor([backend('a', 'suspect'), backend('b', 'unknown')]), 1);
    assert.equal(exitCodeFor([backend('a', 'down', ['up', 'down']), backend('b', 'maintenance')]), 2);
    assert.equal(exitCodeFor([]), 0);
  });

  it('admin base URL maps wildcard binds to loopback and brackets IPv6', () => {
    assert.equal(adminBaseUrl({ address: '0.0.0.0', port: 8025 }), 'http://127.0.0.1:8025');
    assert.equal(adminBaseUrl({ address: '::', port: 1 }), 'http://[::1]:1');
    assert.equal(adminBaseUrl({ address: 'fd00::5', port: 1 }), 'http://[fd00::5]:1');
    assert.equal(adminBaseUrl({ address: '10.1.2.3', port: 9 }), 'http://10.1.2.3:9');
  });

  it('formats one aligned row per endpoint', () => {
    const lines = formatTable([backend('backend-a', 'down', ['down', 'up'])], NOW);
    assert.equal(lines.length, 3);
    assert.match(lines[0]!, /^BACKEND\s+PROTOCOL\s+STATE\s+SINCE\s+SESSIONS\s+LAST PROBE$/);
    assert.match(lines[1]!, /^backend-a\s+imap\s+down\s+60m ago\s+2\s+FAIL connect 2s ago \(ECONNREFUSED\)$/);
    assert.match(lines[2]!, /^backend-a\s+pop3\s+up\s+60m ago\s+2\s+ok 4ms 2s ago "Dovecot ready."$/);
    assert.equal(lines[1]!.indexOf('imap'), lines[0]!.indexOf('PROTOCOL'));
  });

  it('runStatus asks /backends with the token and returns 0 / 2; 3 when unreachable or refused', async () => {
    let snap: BackendSnapshot[] = [backend('a', 'up')];
    const deps: AdminDeps = { readiness: () => ({ ready: true, reasons: [] }), metrics: async () => ({ contentType: 'text/plain', body: '' }), backends: async () => snap, setMaintenance: async () => undefined, listSessions: async () => [], kickSessions: async () => ({ kicked: 0 }) };
    const srv = await startAdminServer({ deps, token: 'tok', address: '127.0.0.1', port: 0 });
    const out: string[] = [];
    const print = (l: string) => out.push(l);
    try {
      const cfg = (token?: string, port = srv.port) => testConfig({ admin: { address: '127.0.0.1', port, ...(token ? { token } : {}) } });
      assert.equal(await runStatus(cfg('tok'), { print, now: NOW }), 0);
      assert.match(out[0]!, /^MAILPROXY OK - 1 backends$/);
      snap = [backend('a', 'up'), backend('b', 'down')];
      out.length = 0;
      assert.equal(await runStatus(cfg('tok'), { print, now: NOW }), 2);
      assert.match(out[0]!, /^MAILPROXY CRITICAL - 2 backends; down: b$/);
      assert.equal(out.length, 4);
      out.length = 0;
      assert.equal(await runStatus(cfg('wrong'), { print }), 3);
      assert.match(out[0]!, /refused the token/);
    } finally { await srv.close(); }
    out.length = 0;
    const closedPort = await new Promise<number>((resolve) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); }); });
    assert.equal(await runStatus(testConfig({ admin: { address: '127.0.0.1', port: closedPort } }), { print }), 3);
    assert.match(out[0]!, /^MAILPROXY UNKNOWN - admin server at http:\/\/127\.0\.0\.1:\d+\/backends unreachable \(ECONNREFUSED\)$/);
    assert.equal(await runStatus(testConfig({ admin: { enabled: false } }), { print }), 3);
  });
});
