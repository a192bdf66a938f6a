// The smallest valid configuration file, as YAML text, shared by the config and lifecycle unit tests.
// Must not hold anything a test asserts on beyond "valid and minimal".
export const MINIMAL_YAML = `
listeners:
  - { protocol: imap, port: 143, tls: none }
directory:
  type: static
  static: { file: users.yaml }
`;
