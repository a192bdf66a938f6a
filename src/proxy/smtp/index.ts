// Owns the public face of the SMTP services: the two ConnectionHandler factories and their deps type.
// Must not hold logic; the composition root imports from here only.
export { createSubmissionService } from './submission.js';
export { createInboundService } from './inbound.js';
export { createLmtpService } from './lmtp.js';
export type { SmtpServiceDeps } from './frontend.js';
