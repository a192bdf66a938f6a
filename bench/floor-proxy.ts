// Owns the benchmark's "node floor": the least a Node program can do for the bench's session shape (greeting, LOGIN →
// backend ID+LOGIN in one write, OK, then a byte splice with the proxy's own bulk reads on the backend side).
// Must not be used as a proxy: no timers, limits, logs, metrics, errors beyond closing; it measures Node's net layer.
import { createServer, type Socket } from 'node:net';
import { connectBulk, pipeBulk } from '../src/proxy/bulk-read.js';

const [port, backendPort] = process.argv.slice(2).map(Number);
if (!port || !backendPort) throw new Error('usage: floor-proxy PORT BACKEND_PORT');

const GREETING = '* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN] floor ready\r\n';
const LOGIN = /^(\S+) LOGIN (\S+) (\S+)\r\n/;

function splice(client: Socket, backend: Socket): void {
  pipeBulk(backend, { client, countDown: () => undefined });
  client.on('data', (b: Buffer) => { if (!backend.write(b)) client.pause(); });
  backend.on('drain', () => client.resume());
  client.on('close', () => backend.destroy());
  backend.on('close', () => client.end());
  backend.resume();
}

function login(client: Socket, tag: string, user: string, pass: string): void {
  const backend = connectBulk('127.0.0.1', backendPort!);
  backend.on('error', () => client.destroy());
  let text = '';
  let greeted = false;
  const onData = (b: Buffer) => {
    text += b.toString('latin1');
    if (!greeted) {
      const nl = text.indexOf('\r\n');
      if (nl < 0) return;
      greeted = true;
      text = text.slice(nl + 2);
      backend.write(`f1 ID ("x-originating-ip" "${client.remoteAddress ?? ''}")\r\nf2 LOGIN ${user} ${pass}\r\n`);
    }
    const at = text.indexOf('\r\nf2 ') >= 0 ? text.indexOf('\r\nf2 ') + 2 : text.startsWith('f2 ') ? 0 : -1;
    if (at < 0 || !text.endsWith('\r\n')) return;
    backend.off('data', onData);
    backend.pause();
    const ok = text.startsWith('f2 OK', at);
    client.write(`${tag} ${ok ? 'OK' : 'NO'} ${text.slice(at + 6)}`);
    if (!ok) { backend.destroy(); client.end(); return; }
    splice(client, backend);
    client.resume();
  };
  backend.on('data', onData);
}

createServer({ noDelay: true }, (client) => {
  client.on('error', () => undefined);
  client.write(GREETING);
  let line = '';
  const onData = (b: Buffer) => {
    line += b.toString('latin1');
    const m = LOGIN.exec(line);
    if (!m) { if (line.length > 1024) client.destroy(); return; }
    client.off('data', onData);
    client.pause();
    login(client, m[1]!, m[2]!, m[3]!);
  };
  client.on('data', onData);
}).listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
