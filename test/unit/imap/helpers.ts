// Owns shared fixtures for the IMAP unit tests: limits, chunked feeding, dialogue transcripts.
// Must not open sockets or use timers.
import type { LimitsConfig } from '../../../src/config/schema.js';
import type { ClientAction, ClientEvent, Dialogue, DialogueOptions } from '../../../src/proxy/protocol.js';
import { createImapDialogue } from '../../../src/proxy/imap/dialogue.js';

export const LIMITS: LimitsConfig = {
  maxLineBytes: 512,
  maxLiteralBytes: 64,
  maxBadCommands: 5,
  maxAuthAttempts: 3,
  preAuthDeadlineMs: 60_000,
  idleTimeoutMs: 1_800_000,
  authFailureDelayMs: 0,
  authFailureMaxDelayMs: 0,
};

/** Every way of cutting `input` in two, plus one byte at a time. */
export function splits(input: Buffer): Buffer[][] {
  const out: Buffer[][] = [[input]];
  for (let i = 1; i < input.length; i++) out.push([input.subarray(0, i), input.subarray(i)]);
  out.push([...input].map((b) => Buffer.from([b])));
  return out;
}

/** Test options; `greeting: undefined` means no configured greeting (the default text). */
export function options(over: { [K in keyof DialogueOptions]?: DialogueOptions[K] | undefined } = {}): DialogueOptions {
  const { greeting, ...rest } = { tls: true, starttls: false, requireTlsForAuth: true, limits: LIMITS, greeting: 'test ready', ...over };
  return { ...(rest as Omit<DialogueOptions, 'greeting'>), ...(greeting === undefined ? {} : { greeting }) };
}

/** Flatten actions: sends become text, others stay as objects. */
export function sent(actions: ClientAction[]): string {
  return actions.map((a) => (a.kind === 'send' ? a.bytes.toString() : '')).join('');
}

export function nonSend(actions: ClientAction[]): ClientAction[] {
  return actions.filter((a) => a.kind !== 'send');
}

/** A dialogue after its greeting, with a feed helper. */
export function dialogue(over: Parameters<typeof options>[0] = {}): { d: Dialogue; greeting: string; feed(text: string | Buffer): ClientAction[]; step(e: ClientEvent): ClientAction[] } {
  const d = createImapDialogue(options(over));
  const greeting = sent(d.start());
  return {
    d,
    greeting,
    feed: (text) => d.step({ kind: 'data', bytes: Buffer.isBuffer(text) ? text : Buffer.from(text) }),
    step: (e) => d.step(e),
  };
}

/** Feed `chunks` into a fresh dialogue and collect all actions, merging adjacent sends. */
export function transcript(chunks: Buffer[], over: Partial<DialogueOptions> = {}): Array<ClientAction | string> {
  const { d } = dialogue(over);
  const all: ClientAction[] = [];
  for (const c of chunks) all.push(...d.step({ kind: 'data', bytes: c }));
  const out: Array<ClientAction | string> = [];
  for (const a of all) {
    const last = out[out.length - 1];
    if (a.kind === 'send' && typeof last === 'string') out[out.length - 1] = last + a.bytes.toString();
    else out.push(a.kind === 'send' ? a.bytes.toString() : a);
  }
  return out;
}
