// Owns the ManageSieve protocol module: wires the client dialogue, the backend login and the spliced-session goodbye into one ProtocolModule.
// Must not hold per-connection state or do I/O; it only names the factories.
import type { ProxyError } from '../../errors.js';
import type { ProtocolModule } from '../protocol.js';
import { createSieveBackendLogin } from './backend-login.js';
import { createSieveDialogue } from './dialogue.js';
import { bye } from './replies.js';

export const sieveModule: ProtocolModule = {
  protocol: 'sieve',
  createDialogue: createSieveDialogue,
  createBackendLogin: createSieveBackendLogin,
  // RFC 5804 §1.3: BYE is the server's way to close a connection in any state.
  goodbye: (error: ProxyError) => bye(error.code),
};
