// Proves the dialogues' shared pieces: the action buffer (text coalesced, order kept, emptied by flush) and the pre-login
// counters (limit reached on exactly the Nth event, the two counters independent). Must not open sockets or use timers.
import assert from 'node:assert/strict';
import { ActionBuffer, PreLoginCounters } from '../../../src/proxy/dialogue-kit.js';
import type { ClientAction } from '../../../src/proxy/protocol.js';

class Probe extends ActionBuffer {
  say(text: string): this { this.send(text); return this; }
  act(action: ClientAction): this { this.emit(action); return this; }
  take(): ClientAction[] { return this.flush(); }
}

describe('dialogue kit', () => {
  it('coalesces reply text into one send and keeps it before a following action', () => {
    const p = new Probe();
    assert.deepEqual(p.take(), []);
    p.say('a\r\n').say('b\r\n').act({ kind: 'start-tls' }).say('c\r\n');
    assert.deepEqual(p.take(), [{ kind: 'send', bytes: 'a\r\nb\r\n' }, { kind: 'start-tls' }, { kind: 'send', bytes: 'c\r\n' }]);
    assert.deepEqual(p.take(), []);
    p.act({ kind: 'close', reason: 'CLOSED' });
    assert.deepEqual(p.take(), [{ kind: 'close', reason: 'CLOSED' }]);
  });

  it('counts bad commands and failed logins separately, true from the limit on', () => {
    const c = new PreLoginCounters({ maxBadCommands: 3, maxAuthAttempts: 2 });
    assert.deepEqual([c.badCommand(), c.badCommand()], [false, false]);
    assert.equal(c.authFailure(), false);
    assert.equal(c.badCommand(), true);
    assert.equal(c.authFailure(), true);
    assert.equal(c.badCommand(), true);
    const one = new PreLoginCounters({ maxBadCommands: 1, maxAuthAttempts: 1 });
    assert.equal(one.authFailure(), true);
  });
});
