import assert from 'node:assert/strict';
import { runKick } from '../../../src/tier/cli.js';
import type { Config } from '../../../src/config/schema.js';

describe('mailproxy kick (CLI over the admin API)', () => {
  const config = { admin: { enabled: true, address: '127.0.0.1', port: 9901, token: 't0k' } } as unknown as Pick<Config, 'admin'>;
  const run = async (filter: { user?: string; backend?: string }, status: number, body: unknown) => {
    const lines: string[] = [];
    const asked: Array<{ url: string; method: string | undefined; auth: string | undefined }> = [];
    const fetch = (async (url: string, init: RequestInit) => {
      asked.push({ url, method: init.method, auth: (init.headers as Record<string, string>)['authorization'] });
      return new Response(JSON.stringify(body), { status });
    }) as unknown as typeof globalThis.fetch;
    const code = await runKick(config, filter, { fetch, print: (l) => lines.push(l) });
    return { code, lines, asked };
  };

  it('says whether the kick went to the tier, is pending tier-wide, or stayed here', async () => {
    let r = await run({ user: 'alice' }, 200, { kicked: 2, tier: 'sent' });
    assert.equal(r.code, 0);
    assert.deepEqual(r.asked, [{ url: 'http://127.0.0.1:9901/sessions/kick?user=alice', method: 'POST', auth: 'Bearer t0k' }]);
    assert.deepEqual(r.lines, ['closed 2 sessions of alice here; sent to every instance of the tier']);
    r = await run({ user: 'al ice&x=1', backend: 'b1' }, 200, { kicked: 1, tier: 'pending', message: '…' });
    assert.equal(r.code, 0, 'pending is done here and promised tier-wide');
    assert.equal(r.asked[0]!.url, 'http://127.0.0.1:9901/sessions/kick?user=al+ice%26x%3D1&backend=b1');
    assert.match(r.lines[0]!, /^closed 1 sessions of al ice&x=1 on b1 here; pending tier-wide: Redis is unreachable/);
    r = await run({ backend: 'b1' }, 200, { kicked: 0 });
    assert.deepEqual(r.lines, ['closed 0 sessions on b1 here; this instance only (no tier)']);
    r = await run({ user: 'alice' }, 401, { error: 'no' });
    assert.equal(r.code, 3);
    assert.match(r.lines[0]!, /^mailproxy kick: admin server at .* answered HTTP 401/);
  });
});
