// Owns a benchmark-only preload for the proxy processes (`--expose-gc --import=…/gc-signal.js`): SIGURG runs a full GC and,
// with BENCH_MEM_DIR set, writes the process's V8 heap figures to BENCH_MEM_DIR/mem-PID.json. Must not be loaded outside
// the benchmark; the held-sessions figure uses it to measure PSS at the same point of V8's GC cycle and to split it.
import { writeFileSync } from 'node:fs';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';

process.on('SIGURG', () => {
  (globalThis as { gc?: () => void }).gc?.();
  const dir = process.env['BENCH_MEM_DIR'];
  if (!dir) return;
  const spaces = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, { physical: s.physical_space_size, used: s.space_used_size, size: s.space_size }]));
  writeFileSync(`${dir}/mem-${process.pid}.json`, JSON.stringify({ usage: process.memoryUsage(), heap: getHeapStatistics(), spaces }));
});
