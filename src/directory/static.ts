// Owns the file-backed directory: a YAML users file (hashes, host, mail, aliases) validated strictly and held in memory.
// Must not write the file or log passwords; an unknown user costs the same hash verification as a known one.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ProxyError } from '../errors.js';
import type { Logger } from '../log.js';
import { isTokenCredentials, type Credentials } from '../core/types.js';
import type { Account, AuthResult, Directory } from './directory.js';
import { isAcceptableName, normalizeAddress } from './names.js';
import { describeHashProblem, verifyPassword } from './password-hash.js';

const userSchema = z.strictObject({
  /** Scheme-prefixed hash, e.g. {SSHA512}… or {BLF-CRYPT}$2y$… ({PLAIN} only for tests). */
  password: z.string().superRefine((hash, ctx) => {
    const problem = describeHashProblem(hash);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }),
  host: z.string().min(1).nullable().default(null),
  mail: z.string().includes('@').optional(),
  aliases: z.array(z.string().includes('@')).default([]),
});

const fileSchema = z.strictObject({
  users: z.record(z.string().min(1), userSchema).default({}),
});

type StaticUser = z.output<typeof userSchema>;

interface Table {
  byLogin: Map<string, [string, StaticUser]>;
  byAddress: Map<string, [string, StaticUser]>;
  /** A real stored hash checked when the user is unknown, so the reply time does not reveal existence. */
  decoyHash: string;
}

/** Used as the decoy only when the file has no users at all. */
const EMPTY_FILE_DECOY = '{SSHA512}BDMemg6TcIPOziIR7qI+HA8UjZ6AJXGQ+m/E7Sltu8S4YRvYSp+pG5xDWTf0J2pvcQLRKrQ/EsKSTsUXMOTzHJAY2LAaNrLI';

function toAccount(login: string, u: StaticUser): Account {
  return { login, host: u.host, ...(u.mail !== undefined ? { mail: u.mail } : {}) };
}

/** Parse and validate users-file text; throws ProxyError CONFIG_INVALID naming the file and the bad keys. */
export function parseUsersFile(text: string, file: string): Table {
  let raw: unknown;
  try { raw = parseYaml(text) ?? {}; } catch (e) {
    throw new ProxyError('CONFIG_INVALID', `${file}: invalid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const result = fileSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`);
    throw new ProxyError('CONFIG_INVALID', `${file}: ${problems.join('; ')}`);
  }
  const byLogin = new Map<string, [string, StaticUser]>();
  const byAddress = new Map<string, [string, StaticUser]>();
  for (const [login, user] of Object.entries(result.data.users)) {
    byLogin.set(login, [login, user]);
    for (const address of [user.mail, ...user.aliases]) {
      if (address === undefined) continue;
      const key = normalizeAddress(address);
      const owner = byAddress.get(key);
      if (owner && owner[0] !== login) throw new ProxyError('CONFIG_INVALID', `${file}: address ${address} belongs to both ${owner[0]} and ${login}`);
      byAddress.set(key, [login, user]);
    }
  }
  const first = byLogin.values().next();
  return { byLogin, byAddress, decoyHash: first.done ? EMPTY_FILE_DECOY : first.value[1].password };
}

export class StaticDirectory implements Directory {
  private table: Table;

  /** Reads and validates the file now: a bad file fails startup with CONFIG_INVALID. */
  constructor(private readonly file: string, private readonly logger: Logger) {
    this.table = this.read();
  }

  /** Re-read the file; on any problem the previous users stay in effect and the error is thrown. */
  async reload(): Promise<void> {
    this.table = this.read();
    this.logger.info({ file: this.file, users: this.table.byLogin.size }, 'static directory reloaded');
  }

  async authenticate(credentials: Credentials): Promise<AuthResult> {
    // Bearer tokens are checked by the OAuth layer in front of this directory (directory/oauth.ts), never here.
    if (isTokenCredentials(credentials)) return { ok: false };
    const found = this.find(credentials.user);
    const hash = found ? found[1].password : this.table.decoyHash;
    const verified = await verifyPassword(hash, credentials.password);
    if (!found || !verified || credentials.password === '') return { ok: false };
    return { ok: true, account: toAccount(found[0], found[1]) };
  }

  async lookup(name: string): Promise<Account | null> {
    const found = this.find(name);
    return found ? toAccount(found[0], found[1]) : null;
  }

  async lookupRecipient(address: string): Promise<Account | null> {
    if (!isAcceptableName(address) || !address.includes('@')) return null;
    const found = this.table.byAddress.get(normalizeAddress(address));
    return found ? toAccount(found[0], found[1]) : null;
  }

  async close(): Promise<void> { /* nothing held open */ }

  /** Login name exactly, else an address (mail or alias) with a case-insensitive domain. */
  private find(name: string): [string, StaticUser] | undefined {
    if (!isAcceptableName(name)) return undefined;
    return this.table.byLogin.get(name) ?? (name.includes('@') ? this.table.byAddress.get(normalizeAddress(name)) : undefined);
  }

  private read(): Table {
    let text: string;
    try { text = readFileSync(this.file, 'utf8'); } catch (e) {
      throw new ProxyError('CONFIG_INVALID', `cannot read static directory file ${this.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return parseUsersFile(text, this.file);
  }
}
