// Owns the POP3 protocol module: the one object the Session needs to run POP3 (dialogue, backend login, goodbye).
// Must not hold protocol logic itself; it only wires parser, dialogue, backend login and replies together.
import type { ProxyError } from '../../errors.js';
import type { ProtocolModule } from '../protocol.js';
import { createPop3BackendLogin } from './backend-login.js';
import { createPop3Dialogue } from './dialogue.js';
import { line } from './replies.js';

export const pop3Module: ProtocolModule = {
  protocol: 'pop3',
  createDialogue: createPop3Dialogue,
  createBackendLogin: createPop3BackendLogin,
  goodbye: (error: ProxyError): string => line(error.spec.pop3),
};

export { createPop3BackendLogin, createPop3Dialogue };
export { Pop3LineParser } from './parser.js';
