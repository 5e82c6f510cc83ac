// Fan-out peer: Node's `ws` with its README's broadcast recipe. Every
// message a client sends goes to every open client (itself included).
// Usage: node broadcast.js --addr HOST:PORT   (prints "listening on ADDR")
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const i = process.argv.indexOf('--addr');
const [host, port] = (i > 0 ? process.argv[i + 1] : '127.0.0.1:9003').split(':');
const wss = new WebSocketServer({ host, port: Number(port), perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    wss.clients.forEach((client) => {
      if (client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    });
  });
});
wss.on('listening', () => {
  const a = wss.address();
  console.log(`listening on ${a.address}:${a.port}`);
});
