// Proves ride-through in the backend-session pipeline on in-memory sockets and a fake clock: retries while health
// allows, success as soon as the backend answers, fail fast when it does not allow, identity reported. Must not open sockets.
import assert from 'node:assert/strict';
import type { Route } from '../../../src/directory/backends.js';
import type { BackendGate } from '../../../src/health/gate.js';
import { ProtocolService } from '../../../src/proxy/session.js';
import { imapModule } from '../../../src/proxy/imap/index.js';
import { RIDE_THROUGH_RETRY_MS } from '../../../src/proxy/backend-session.js';
import { FakeClock } from '../health/fake-clock.js';
import { PORTS, accepted, fakeDialer, handlerDeps, socketPair, testConfig, type Behaviour } from './fakes.js';

/** An IMAP backend greeting with `name` that answers ID; a LOGIN gets `onLogin(tag)` (undefined: no answer). */
function imapBackend(name: string, onLogin: (tag: string) => string | undefined): Behaviour {
  return {
    kind: 'script',
    script: {
      greeting: `* OK [CAPABILITY IMAP4rev1 LITERAL+ ID] ${name}\r\n`,
      reply: (line) => {
        const tag = line.split(' ')[0] ?? '';
        if (/^\S+ ID /.test(line)) return `* ID NIL\r\n${tag} OK ID completed\r\n`;
        if (/^\S+ LOGIN /.test(line)) return onLogin(tag);
        return undefined;
      },
    },
  };
}
const BACKEND = imapBackend('node2 ready', (tag) => `${tag} OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n`);

/** A gate whose ride-through window the test sets; records reports with their identity. */
function gate(clock: FakeClock, holdUntil: () => number | null) {
  const reports: Array<[string, string | undefined]> = [];
  const g: BackendGate = {
    admit: (r: Route) => r,
    report: (_r, outcome, identity) => { reports.push([outcome, identity]); },
    rideThroughUntil: () => holdUntil(),
  };
  return { g, reports, clock };
}

function setup(holdUntil: (clock: FakeClock) => number | null, config = testConfig()) {
  const clock = new FakeClock();
  const byPort: Record<number, Behaviour> = {};
  const { g, reports } = gate(clock, () => holdUntil(clock));
  const { dial, backends: opened } = fakeDialer(byPort);
  const service = new ProtocolService({ ...handlerDeps(config, dial, clock, g), module: imapModule });
  const [client, server] = socketPair();
  client.collect();
  service.handle(server.asSocket(), accepted('imap'));
  const login = async () => { client.write('a1 LOGIN alice secret\r\n'); await clock.advance(0); };
  return { clock, byPort, reports, client, login, opened };
}

describe('ride-through in the backend-session pipeline', () => {
  it('a refusing backend is retried every RIDE_THROUGH_RETRY_MS while health allows; the login succeeds as soon as it answers', async () => {
    const s = setup((clock) => clock.now() + 10_000);
    await s.clock.advance(0);
    await s.login();
    await s.clock.advance(RIDE_THROUGH_RETRY_MS * 5);
    assert.doesNotMatch(s.client.text, /a1 /, 'still waiting, no error');
    s.byPort[PORTS.imap] = BACKEND;
    await s.clock.advance(RIDE_THROUGH_RETRY_MS);
    assert.match(s.client.text, /a1 OK /);
    const fails = s.reports.filter(([o]) => o === 'fail').length;
    assert.ok(fails >= 5, `${fails} failed attempts reported`);
    assert.deepEqual(s.reports.at(-1), ['ok', 'node2 ready'], 'the greeting identity goes to health with the outcome');
  });

  it('a connect that fails on this host (EMFILE: out of descriptors) is neither reported to health nor ridden through', async () => {
    const s = setup((clock) => clock.now() + 10_000);
    s.byPort[PORTS.imap] = { kind: 'refuse', code: 'EMFILE' };
    await s.clock.advance(0);
    await s.login();
    assert.match(s.client.text, /a1 NO \[UNAVAILABLE\] /, 'the temporary error at once');
    assert.deepEqual(s.reports, [], 'the backend was never asked: nothing for health to learn');
  });

  it('no ride-through allowed (down past the hold, or never up): the temporary error at once', async () => {
    const s = setup(() => null);
    await s.clock.advance(0);
    await s.login();
    assert.match(s.client.text, /a1 NO \[UNAVAILABLE\] /);
    assert.deepEqual(s.reports, [['fail', undefined]]);
  });

  it('the hold ends before the backend returns: the login fails then, not at the end of its budget', async () => {
    let until = 0;
    const s = setup((clock) => { until ||= clock.now() + 1000; return until; });
    await s.clock.advance(0);
    await s.login();
    await s.clock.advance(700);
    assert.doesNotMatch(s.client.text, /a1 /);
    await s.clock.advance(400);
    assert.match(s.client.text, /a1 NO \[UNAVAILABLE\] /);
  });

  it('a hung backend (accepted, no greeting) is not retried', async () => {
    const s = setup((clock) => clock.now() + 10_000);
    s.byPort[PORTS.imap] = { kind: 'silent' };
    await s.clock.advance(0);
    await s.login();
    await s.clock.advance(2000);
    assert.match(s.client.text, /a1 NO \[UNAVAILABLE\] /);
    assert.deepEqual(s.reports, [['hang', undefined]]);
  });

  it('a backend that closes after its greeting, before the login reply (stopping mid-login), is retried', async () => {
    const s = setup((clock) => clock.now() + 10_000);
    s.byPort[PORTS.imap] = { kind: 'script', script: { greeting: '* OK node2 ready\r\n', reply: () => null } };
    await s.clock.advance(0);
    await s.login();
    await s.clock.advance(RIDE_THROUGH_RETRY_MS * 2);
    assert.doesNotMatch(s.client.text, /a1 /, 'still riding through');
    s.byPort[PORTS.imap] = BACKEND;
    await s.clock.advance(RIDE_THROUGH_RETRY_MS);
    assert.match(s.client.text, /a1 OK /);
  });

  it('a login answered with a temporary refusal (another proxy that cut a loop) is final, not retried', async () => {
    const s = setup((clock) => clock.now() + 10_000);
    let logins = 0;
    s.byPort[PORTS.imap] = imapBackend('proxy ready', (tag) => { logins++; return `${tag} NO [UNAVAILABLE] Route loops back\r\n`; });
    await s.clock.advance(0);
    await s.login();
    await s.clock.advance(RIDE_THROUGH_RETRY_MS * 5);
    assert.match(s.client.text, /a1 NO \[UNAVAILABLE\] /);
    assert.equal(logins, 1, 'one login attempt only');
  });

  describe('a backend silent after its greeting (backendLogin.replyTimeoutMs, default 5000)', () => {
    /** Greets, answers ID at once, and holds every LOGIN (the test answers it, or not, through `answer`). */
    function greetsThenHolds(s: ReturnType<typeof setup>) {
      const held: string[] = [];
      s.byPort[PORTS.imap] = imapBackend('node2 ready', (tag) => { held.push(tag); return undefined; });
      return { held, answer: (text: string) => s.opened.at(-1)!.write(`${held.at(-1)} ${text}\r\n`) };
    }
    const longBudget = () => testConfig({ backendLogin: { backendLoginBudgetMs: 15_000, connectTimeoutMs: 1000 } });

    it('no login reply within replyTimeoutMs: the temporary error then (not at the 15 s budget), reported as a failure (not a hang), not retried', async () => {
      const s = setup((clock) => clock.now() + 10_000, longBudget());
      const b = greetsThenHolds(s);
      await s.clock.advance(0);
      await s.login();
      assert.equal(b.held.length, 1, 'the login reached the backend');
      await s.clock.advance(4990);
      assert.doesNotMatch(s.client.text, /a1 /);
      await s.clock.advance(10);
      assert.match(s.client.text, /a1 NO \[UNAVAILABLE\] /);
      assert.deepEqual(s.reports, [['fail', 'node2 ready']], 'one attempt, a failure with the greeting identity');
      await s.clock.advance(RIDE_THROUGH_RETRY_MS * 3);
      assert.equal(s.opened.length, 1, 'no second connection although health would allow a ride-through');
    });

    it('a reply slower than greetingTimeoutMs but within replyTimeoutMs (the backend\'s auth-failure delay) is the answer', async () => {
      const s = setup(() => null, longBudget());
      const b = greetsThenHolds(s);
      await s.clock.advance(0);
      await s.login();
      await s.clock.advance(2500);
      b.answer('NO [AUTHENTICATIONFAILED] Authentication failed.');
      await s.clock.advance(100); // the proxy's own failure delay (testConfig: 100 ms)
      assert.match(s.client.text, /a1 NO \[AUTHENTICATIONFAILED\] /);
      assert.deepEqual(s.reports, [['ok', 'node2 ready']], 'an answered refusal shows a live backend');
    });

    it('the bound is per reply: each line the backend sends restarts it', async () => {
      const s = setup(() => null, longBudget());
      const b = greetsThenHolds(s);
      await s.clock.advance(0);
      await s.login();
      await s.clock.advance(4000);
      s.opened[0]!.write('* OK still working\r\n');
      await s.clock.advance(4000);
      assert.doesNotMatch(s.client.text, /a1 /, '8 s after the login, but only 4 s since the backend last spoke');
      b.answer('OK [CAPABILITY IMAP4rev1 IDLE] Logged in');
      await s.clock.advance(0);
      assert.match(s.client.text, /a1 OK /);
    });

    it('the key is read from the config', async () => {
      const s = setup(() => null, testConfig({ backendLogin: { backendLoginBudgetMs: 15_000, connectTimeoutMs: 1000, replyTimeoutMs: 800 } }));
      greetsThenHolds(s);
      await s.clock.advance(0);
      await s.login();
      await s.clock.advance(790);
      assert.doesNotMatch(s.client.text, /a1 /);
      await s.clock.advance(10);
      assert.match(s.client.text, /a1 NO \[UNAVAILABLE\] /);
    });
  });
});
