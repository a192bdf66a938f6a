// Proves that every protocol of a pool user reaches the same member: IMAP, POP3, submission and inbound delivery (SMTP, LMTP front-end),
// that maintenance on a member drains it, and that members removed or added by SIGHUP never put a user on two members.
// Evidence: each Dovecot member's own log (logins, LMTP deliveries).
// Must not repeat the load and overlap figures (pool-affinity.test.ts).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import nodemailer from 'nodemailer';
import { rankMembers } from '../../src/directory/pool-route.js';
import { adminGet, startChildProxy, type ChildProxy } from './child-proxy.js';
import { findOverlaps, parseSessions } from './harness/dovecot-sessions.js';
import { deliverLmtp, markerMessage } from './harness/lmtp.js';
import { allocatePorts, pollUntil } from './harness/ports.js';
import { startPoolWorld, type PoolWorld } from './harness/pool-world.js';
import type { RawConfig } from './proxy-fixture.js';
import { holdImap, imapOnce, pop3Once, untilOk } from './pool-clients.js';

const MEMBERS = ['member1', 'member2', 'member3'];

describe('pool: every protocol of a user on one member; maintenance drains', function () {
  this.timeout(180_000);
  let w: PoolWorld;
  let proxy: ChildProxy;
  let raw: RawConfig;
  const p: Record<'imap' | 'pop3' | 'submission' | 'smtp' | 'lmtp', number> = { imap: 0, pop3: 0, submission: 0, smtp: 0, lmtp: 0 };

  before(async () => {
    w = await startPoolWorld({ members: 3, users: 12 });
    const directory = await w.writeDirectory('store1');
    [p.imap, p.pop3, p.submission, p.smtp, p.lmtp] = (await allocatePorts(5)) as [number, number, number, number, number];
    raw = {
      log: { level: 'info' },
      listeners: [
        { protocol: 'imap', address: '127.0.0.1', port: p.imap, tls: 'none' },
        { protocol: 'pop3', address: '127.0.0.1', port: p.pop3, tls: 'none' },
        { protocol: 'submission', address: '127.0.0.1', port: p.submission, tls: 'none' },
        { protocol: 'smtp', address: '127.0.0.1', port: p.smtp, tls: 'none' },
        { protocol: 'lmtp', address: '127.0.0.1', port: p.lmtp, tls: 'none' },
      ],
      imap: { requireTlsForAuth: false },
      pop3: { requireTlsForAuth: false },
      smtp: { requireTlsForAuth: false },
      directory: { type: 'static', static: { file: directory } },
      backends: Object.fromEntries(w.members.map((m) => [m.name, {
        host: '127.0.0.1', trustsProxy: true,
        imap: { port: m.dovecot.ports.imap }, pop3: { port: m.dovecot.ports.pop3 }, submission: { port: m.dovecot.ports.submission }, lmtp: { port: m.dovecot.ports.lmtp },
      }])),
      pools: { store1: { members: MEMBERS, moveBackAfterMs: 60_000, drainWindowMs: 1500 } },
      health: { intervalMs: 300, timeoutMs: 1000, rise: 1, fall: 2 },
      admin: { address: '127.0.0.1', port: 0 },
    };
    proxy = await startChildProxy(w, raw, { name: 'pool-protocols', timeoutMs: 60_000 });
  });
  after(async () => { await proxy?.stop(); await w?.stop(); });

  const first = (uid: string, members = MEMBERS) => rankMembers(uid, members.map((name) => ({ name, weight: 1 })))[0]!;
  /** Members whose LMTP saved mail for `uid`. */
  const deliveredOn = async (uid: string): Promise<string[]> => {
    const out: string[] = [];
    for (const m of w.members) if ((await readFile(m.dovecot.logPath, 'utf8')).split('\n').some((l) => l.includes(`lmtp(${uid})`) && /saved mail to/.test(l))) out.push(m.name);
    return out;
  };

  it('IMAP, POP3, submission and inbound delivery (SMTP and the LMTP front-end) of each user reach the member hashing names', async () => {
    for (const u of w.users.slice(0, 6)) {
      await untilOk(() => imapOnce(p.imap, u.uid, u.password));
      await untilOk(() => pop3Once(p.pop3, u.uid, u.password));
      await nodemailer.createTransport({ host: '127.0.0.1', port: p.submission, secure: false, ignoreTLS: true, auth: { user: u.uid, pass: u.password } })
        .sendMail({ from: u.mail, to: 'someone@elsewhere.example', subject: 'pool', text: 'x' });
      await nodemailer.createTransport({ host: '127.0.0.1', port: p.smtp, secure: false, ignoreTLS: true })
        .sendMail({ from: 'sender@elsewhere.example', to: u.mail, subject: 'inbound', text: 'y' });
      await deliverLmtp(p.lmtp, u.mail, markerMessage('pool', u.mail, 'via the LMTP front-end'));
    }
    await new Promise((r) => setTimeout(r, 300));
    const sessions = (await Promise.all(w.members.map(async (m) => parseSessions(m.name, await readFile(m.dovecot.logPath, 'utf8'))))).flat();
    for (const u of w.users.slice(0, 6)) {
      const want = first(u.uid);
      const mine = sessions.filter((s) => s.user === u.uid);
      assert.deepEqual([...new Set(mine.map((s) => s.protocol))].sort(), ['imap', 'pop3', 'submission'], u.uid);
      assert.deepEqual([...new Set(mine.map((s) => s.member))], [want], `${u.uid} logins`);
      assert.deepEqual(await deliveredOn(u.uid), [want], `${u.uid} delivery`);
      const saved = (await readFile(w.members.find((m) => m.name === want)!.dovecot.logPath, 'utf8')).split('\n').filter((l) => l.includes(`lmtp(${u.uid})`) && /saved mail to/.test(l));
      assert.equal(saved.length, 2, `${u.uid}: one message by inbound SMTP and one by the LMTP front-end on ${want}`);
    }
  });

  it('maintenance: a user with a live session follows it until their drain moment, then moves; others move at once', async () => {
    const users = w.users.filter((u) => first(u.uid) === 'member1');
    assert.ok(users.length >= 2, 'need two users of member1');
    const [heldUser, freeUser] = users as [typeof users[0], typeof users[0]];
    const held = await holdImap(p.imap, heldUser.uid, heldUser.password);
    const r = await adminGet(proxy.adminPort!, '/backends/member1/maintenance?enabled=on', 'POST');
    assert.equal(r.status, 200);
    const t0 = Date.now();
    await pollUntil(async () => JSON.parse((await adminGet(proxy.adminPort!, `/routes/${freeUser.uid}`)).body).member !== 'member1', 5000, () => 'free user moved');
    const where = JSON.parse((await adminGet(proxy.adminPort!, `/routes/${heldUser.uid}`)).body) as { member: string; reason: string; pendingMove?: { to: string } };
    if (Date.now() - t0 < 1000) assert.equal(where.member, 'member1');
    // The held session gets the pool goodbye within the drain window (plus the sweep interval).
    const bye = await held.bye;
    assert.match(bye, /\* BYE \[UNAVAILABLE\]/);
    held.client.close();
    assert.ok(Date.now() - t0 < 1500 + 2500, `drained after ${Date.now() - t0} ms`);
    await untilOk(() => imapOnce(p.imap, heldUser.uid, heldUser.password));
    const next = rankMembers(heldUser.uid, MEMBERS.map((name) => ({ name, weight: 1 })))[1]!;
    const after = JSON.parse((await adminGet(proxy.adminPort!, `/routes/${heldUser.uid}`)).body) as { member: string; reason: string };
    assert.equal(after.member, next);
    assert.equal(after.reason, 'failover');
  });

  it('SIGHUP removing a member closes its users\' sessions there before they log in elsewhere; adding it back waits moveBackAfterMs', async () => {
    assert.equal((await adminGet(proxy.adminPort!, '/backends/member1/maintenance?enabled=off', 'POST')).status, 200);
    const user = w.users.find((u) => first(u.uid) === 'member3')!;
    const second = rankMembers(user.uid, ['member1', 'member2'].map((name) => ({ name, weight: 1 })))[0]!;
    const route = async () => JSON.parse((await adminGet(proxy.adminPort!, `/routes/${user.uid}`)).body) as { member: string | null; reason: string; pendingMove?: { to: string } };
    const reload = async (members: string[]) => {
      const from = proxy.logs.length;
      proxy.writeConfig({ ...raw, pools: { store1: { members, moveBackAfterMs: 2000, drainWindowMs: 1500 } } });
      proxy.signal('SIGHUP');
      await proxy.waitForLog((l) => l['event'] === 'reloaded', 10_000, from);
    };
    /** The goodbye, or a failure naming what did not close (the held session would otherwise wait out its 120 s read). */
    const byeWithin = (held: { bye: Promise<string> }, what: string) => Promise.race([held.bye, new Promise<string>((_, reject) => setTimeout(() => reject(new Error(`no BYE for the session ${what} within 15 s`)), 15_000).unref())]);
    const t0 = Date.now();
    const onThird = await holdImap(p.imap, user.uid, user.password);
    await pollUntil(async () => (await route()).member === 'member3', 5000, () => 'held on member3');

    // Removed: the held session gets the goodbye (at the next login or the sweep), only then does the user go elsewhere.
    await reload(['member1', 'member2']);
    assert.match(await byeWithin(onThird, 'on the removed member'), /\* BYE \[UNAVAILABLE\]/);
    onThird.client.close();
    await untilOk(() => imapOnce(p.imap, user.uid, user.password));
    assert.equal((await route()).member, second);

    // Added back (probed all along): the user's live session elsewhere holds them there until moveBackAfterMs from the reload.
    const onSecond = await holdImap(p.imap, user.uid, user.password);
    await reload(MEMBERS);
    const pending = await route();
    assert.equal(pending.member, second, `right after the reload: ${JSON.stringify(pending)}`);
    assert.equal(pending.pendingMove?.to, 'member3');
    assert.match(await byeWithin(onSecond, 'held away from the returning member'), /\* BYE \[UNAVAILABLE\]/);
    onSecond.client.close();
    await untilOk(() => imapOnce(p.imap, user.uid, user.password));
    assert.equal((await route()).member, 'member3');

    await new Promise((r) => setTimeout(r, 300));
    const sessions = (await Promise.all(w.members.map(async (m) => parseSessions(m.name, await readFile(m.dovecot.logPath, 'utf8'))))).flat()
      .filter((s) => s.user === user.uid && s.start >= t0);
    assert.deepEqual([...new Set(sessions.map((s) => s.member))].sort(), [second, 'member3'].sort());
    assert.deepEqual(findOverlaps(sessions, Date.now()).map((o) => `${o.a.member}/${o.b.member} ${o.ms} ms`), [], 'never on two members at once');
  });
});
