// Owns a benchmark-only preload for the proxy processes (`--expose-gc --import=…/gc-signal.js`): SIGURG runs a full GC.
// Must not be loaded outside the benchmark; the held-sessions figure uses it to measure PSS at the same point of V8's GC cycle.
process.on('SIGURG', () => { (globalThis as { gc?: () => void }).gc?.(); });
