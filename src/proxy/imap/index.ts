// Owns the IMAP protocol module: wires the client dialogue, the backend login and the spliced-session goodbye into one ProtocolModule.
// Must not hold per-connection state or do I/O; it only names the factories.
import type { ProxyError } from '../../errors.js';
import type { ProtocolModule } from '../protocol.js';
import { createImapBackendLogin } from './backend-login.js';
import { createImapDialogue } from './dialogue.js';
import { bye } from './replies.js';

export const imapModule: ProtocolModule = {
  protocol: 'imap',
  createDialogue: createImapDialogue,
  createBackendLogin: createImapBackendLogin,
  // RFC 9051 §7.1.5: an untagged BYE is the only way to tell a client in any state that the server is closing.
  goodbye: (error: ProxyError) => bye(error.code),
};

export { createImapBackendLogin } from './backend-login.js';
export { createImapDialogue } from './dialogue.js';
export { ImapCommandParser } from './parser.js';
