// Proves the shared-storage pool world itself: members share one mail root, and overlaps are computed from Dovecot's own logs.
// Must not involve the proxy; it logs in to the members directly, so the overlap detector is shown able to fail.
import assert from 'node:assert/strict';
import { findOverlaps, membersByUser, parseSessions } from './harness/dovecot-sessions.js';
import { LineClient } from './harness/line-client.js';
import { startPoolWorld, type PoolWorld } from './harness/pool-world.js';

async function imapLogin(port: number, user: string, password: string): Promise<LineClient> {
  const c = await LineClient.connect(port);
  await c.readLine();
  assert.match(await c.command('a', `LOGIN ${user} ${password}`), /^a OK/m);
  return c;
}

async function pop3Session(port: number, user: string, password: string): Promise<void> {
  const c = await LineClient.connect(port);
  await c.readLine();
  c.send(`USER ${user}`);
  assert.match(await c.readLine(), /^\+OK/);
  c.send(`PASS ${password}`);
  assert.match(await c.readLine(), /^\+OK/);
  c.send('QUIT');
  await c.readLine();
  c.close();
}

describe('Dovecot session log parsing', () => {
  it('pairs login and end lines by session id even when the end line was written first', () => {
    const log = [
      '2026-12-06 08:36:42.601000 pop3(pool034)<77><ec4a6496345f>: Info: Disconnected: Logged out top=0/0, retr=0/0, del=0/0, size=0',
      '2026-12-06 08:36:42.603000 pop3-login: Info: Login: user=<pool034>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=77, session=<ec4a6496345f>',
      '2026-12-06 08:36:43.000000 imap-login: Info: Login: user=<pool035>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=78, session=<aaaaaaaaaaaa>',
    ].join('\n');
    const [a, b] = parseSessions('m', log, [new Date(2026, 11, 6, 8, 36, 50).getTime()]);
    assert.equal(a!.end, a!.start, 'an end logged before its login closes the session at its start');
    assert.equal(b!.end, new Date(2026, 11, 6, 8, 36, 50).getTime(), 'a session never ended closes at the member stop');
  });
});

describe('pool world (three Dovecots on one mail root)', function () {
  this.timeout(120_000);
  let w: PoolWorld;
  before(async () => { w = await startPoolWorld({ members: 3, users: 5 }); });
  after(async () => { await w?.stop(); });

  it('serves one mailbox from every member and logs sessions with microsecond stamps; overlaps are detected', async () => {
    const [m1, m2, m3] = w.members.map((m) => m.dovecot) as [typeof w.members[0]['dovecot'], typeof w.members[0]['dovecot'], typeof w.members[0]['dovecot']];
    const u = w.users[0]!;
    const other = w.users[1]!;
    // A message appended through member1 is visible through member2: one storage.
    const a = await imapLogin(m1.ports.imap, u.uid, u.password);
    assert.match(await a.command('b', 'APPEND INBOX {20+}\r\nSubject: shared\r\n\r\nx'), /^b OK/m);
    // While `a` is open, the same user on member2: an overlap the detector must report.
    const b = await imapLogin(m2.ports.imap, u.uid, u.password);
    assert.match(await b.command('c', 'SELECT INBOX'), /\* 1 EXISTS/);
    await b.command('d', 'LOGOUT');
    b.close();
    await a.command('e', 'LOGOUT');
    a.close();
    // Sequential sessions of another user on two members: no overlap.
    await pop3Session(m3.ports.pop3, other.uid, other.password);
    await pop3Session(m1.ports.pop3, other.uid, other.password);
    await new Promise((r) => setTimeout(r, 300)); // Dovecot writes the disconnect lines asynchronously
    const sessions = await w.sessions();
    const mine = sessions.filter((s) => s.user === u.uid);
    assert.deepEqual(mine.map((s) => s.member).sort(), ['member1', 'member2']);
    for (const s of sessions) {
      assert.ok(s.end !== undefined && s.end >= s.start, JSON.stringify(s));
      assert.ok(Math.abs(s.start - Date.now()) < 60_000, `stamp ${s.start} is not now`);
    }
    assert.ok(mine.some((s) => s.start % 1 !== 0 || s.start % 1000 !== 0), 'sub-second stamps');
    const overlaps = findOverlaps(sessions, Date.now());
    assert.equal(overlaps.length, 1, JSON.stringify(overlaps));
    assert.equal(overlaps[0]!.user, u.uid);
    assert.ok(overlaps[0]!.ms > 0);
    assert.deepEqual([...membersByUser(sessions).get(other.uid)!].sort(), ['member1', 'member3']);
    assert.equal(sessions.filter((s) => s.user === other.uid && s.protocol === 'pop3').length, 2);
  });

  it('a killed member ends its open sessions at the stop time', async () => {
    const m2 = w.members[1]!;
    const u = w.users[2]!;
    const c = await imapLogin(m2.dovecot.ports.imap, u.uid, u.password);
    await w.stopMember('member2');
    c.close();
    const s = (await w.sessions()).find((x) => x.user === u.uid)!;
    assert.equal(s.end, m2.stops[0]);
    await w.startMember('member2');
  });
});
