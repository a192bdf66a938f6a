// Test helpers for POP3 dialogue transcripts: run events, normalise actions, replay with data split at every byte offset.
import assert from 'node:assert/strict';
import type { LimitsConfig } from '../../../src/config/schema.js';
import type { ClientAction, ClientEvent, DialogueOptions } from '../../../src/proxy/protocol.js';
import { createPop3Dialogue } from '../../../src/proxy/pop3/dialogue.js';

export function limits(over: Partial<LimitsConfig> = {}): LimitsConfig {
  return {
    maxLineBytes: 8192,
    maxLiteralBytes: 8192,
    maxBadCommands: 10,
    maxAuthAttempts: 3,
    preAuthDeadlineMs: 60_000,
    idleTimeoutMs: 1_800_000,
    authFailureDelayMs: 0,
    authFailureMaxDelayMs: 0,
    ...over,
  };
}

/** Test options; `greeting: undefined` means no configured greeting (the default text). */
export function options(over: { [K in keyof DialogueOptions]?: DialogueOptions[K] | undefined } = {}): DialogueOptions {
  const { greeting, ...rest } = { tls: false, starttls: true, requireTlsForAuth: true, limits: limits(), greeting: 'test ready.', ...over };
  return { ...(rest as Omit<DialogueOptions, 'greeting'>), ...(greeting === undefined ? {} : { greeting }) };
}

/** Readable, comparable form of an action. */
export type Step =
  | { send: string }
  | { startTls: true }
  | { login: { user: string; password: string; mechanism: string } }
  | { relay: string }
  | { close: string };

export function normalise(a: ClientAction): Step {
  switch (a.kind) {
    case 'send':
      return { send: Buffer.isBuffer(a.bytes) ? a.bytes.toString('utf8') : a.bytes };
    case 'start-tls':
      return { startTls: true };
    case 'login':
      return { login: { ...(a.credentials as { user: string; password: string; mechanism: string }) } };
    case 'relay':
      return { relay: a.pending.toString('utf8') };
    case 'close':
      return { close: a.reason };
  }
}

export const data = (text: string | Buffer): ClientEvent => ({ kind: 'data', bytes: Buffer.isBuffer(text) ? text : Buffer.from(text, 'utf8') });

/** Run a dialogue (greeting included) through `events`. */
export function run(opts: DialogueOptions, events: ClientEvent[]): Step[] {
  const d = createPop3Dialogue(opts);
  const out = d.start().map(normalise);
  for (const e of events) out.push(...d.step(e).map(normalise));
  return out;
}

/** Every variant of `events` with one data event split at one byte offset, plus one fed a byte at a time. */
export function* splitVariants(events: ClientEvent[]): Generator<{ label: string; events: ClientEvent[] }> {
  for (let k = 0; k < events.length; k++) {
    const e = events[k]!;
    if (e.kind !== 'data') continue;
    for (let i = 1; i < e.bytes.length; i++) {
      yield {
        label: `event ${k} split at ${i}`,
        events: [...events.slice(0, k), data(e.bytes.subarray(0, i)), data(e.bytes.subarray(i)), ...events.slice(k + 1)],
      };
    }
  }
  const bytewise = events.flatMap((e) => (e.kind === 'data' ? [...e.bytes].map((b) => data(Buffer.from([b]))) : [e]));
  yield { label: 'byte at a time', events: bytewise };
}

/** Assert the transcript, and the same transcript for every split of the client's bytes. */
export function expectTranscript(opts: DialogueOptions, events: ClientEvent[], expected: Step[]): void {
  assert.deepEqual(run(opts, events), expected, 'whole chunks');
  for (const v of splitVariants(events)) assert.deepEqual(run(opts, v.events), expected, v.label);
}
