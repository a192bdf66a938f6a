import assert from 'node:assert/strict';
import { ProxyError } from '../../../src/errors.js';
import { SessionRegistry, type SessionInfo } from '../../../src/proxy/sessions.js';

describe('SessionRegistry: which sessions an operator\'s user names', () => {
  const make = () => {
    const reg = new SessionRegistry();
    const kicked: string[] = [];
    const add = (id: string, info: Partial<SessionInfo>) => reg.add({
      info: { id, protocol: 'imap', client: '192.0.2.1:1', phase: 'relay', startedAt: 1, ...info },
      kick: () => { kicked.push(id); },
    });
    add('s1', { user: 'alice', mail: 'alice@example.test', backend: 'a' });
    add('s2', { user: 'alice', mail: 'alice@example.test', backend: 'b' });
    add('s3', { user: 'bob', mail: 'bob@example.test', backend: 'a' });
    add('s4', { phase: 'prelogin' });
    return { reg, kicked };
  };
  const ids = (reg: SessionRegistry, user: string, backend?: string) => reg.list({ user, ...(backend ? { backend } : {}) }).map((s) => s.info.id).sort();

  it('matches the login name in any case, and the account\'s mail address (as a kick or route invalidation may name it)', () => {
    const { reg } = make();
    for (const name of ['alice', 'Alice', ' ALICE ', 'alice@example.test', 'Alice@Example.TEST']) assert.deepEqual(ids(reg, name), ['s1', 's2'], name);
    assert.deepEqual(ids(reg, 'ALICE@example.test', 'b'), ['s2']);
    assert.deepEqual(ids(reg, 'alic'), []);
    assert.deepEqual(ids(reg, 'example.test'), []);
  });

  it('a kick by mail address closes that user\'s sessions and no one else\'s', () => {
    const { reg, kicked } = make();
    assert.equal(reg.kick({ user: 'Alice@example.test' }, new ProxyError('ADMIN_KICK')), 2);
    assert.deepEqual(kicked.sort(), ['s1', 's2']);
  });
});
