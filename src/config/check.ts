// Owns `mailproxy check-config`: load and validate the file, then run every check that needs the validated config
// (files it names, their contents); each problem is one line `file:line:col: key.path: what is wrong`.
// Must not start anything, bind ports or contact LDAP/backends; a check only reads local files.
import type { Config } from './schema.js';
import { ConfigError, loadConfigLocated, type Locate } from './load.js';

export interface CheckContext {
  /** The config file as given on the command line. */
  file: string;
  /** `file:line:col` of a key path (or of its nearest parent in the file). */
  where: Locate;
}

/** One extra check: returns its problems, each a line naming the key (use `ctx.where(path)` for the position). */
export type ConfigCheck = (config: Config, ctx: CheckContext) => string[] | Promise<string[]>;

/**
 * Checks that run after the schema accepted the file, in order. Add new ones here (e.g. TLS certificate and key files:
 * readable, key matches, not expired), not in main.ts: `check-config` and its tests pick them up.
 */
export const CONFIG_CHECKS: ConfigCheck[] = [];

export interface CheckResult { config?: Config; problems: string[] }

/** Validate `file` and run `checks`; never throws for a problem in the file (a ConfigError's lines become problems). */
export async function checkConfigFile(file: string, checks: readonly ConfigCheck[] = CONFIG_CHECKS): Promise<CheckResult> {
  let loaded: { config: Config; where: Locate };
  try { loaded = loadConfigLocated(file); } catch (e) {
    if (e instanceof ConfigError) return { problems: e.problems.flatMap((p) => p.split('\n')) };
    throw e;
  }
  const problems: string[] = [];
  for (const check of checks) problems.push(...await check(loaded.config, { file, where: loaded.where }));
  return { config: loaded.config, problems };
}
