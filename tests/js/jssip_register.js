// JsSIP 3.13 in Node registering over WSS with a digest, as a browser softphone does: connects to SBC_URL (a test CA
// through NODE_EXTRA_CA_CERTS) as URI (e.g. sip:1001@198.18.1.1) with PASSWORD, prints {"registered": true} when
// the 200 arrives, keeps the registration HOLD_MS milliseconds (the test reads the SBC's binding gauge meanwhile),
// then un-REGISTERs and prints {"unregistered": true, "error": null}. Exits 0 on that path, 1 otherwise (the last
// line says why); gives up after 20 s.
'use strict';

global.WebSocket = require('ws');
const JsSIP = require('jssip');

const hold = Number(process.env.HOLD_MS || '2000');

function finish(error) {
  process.stdout.write(JSON.stringify({ unregistered: !error, error }) + '\n');
  process.exit(error ? 1 : 0);
}

setTimeout(() => finish('timeout after 20 s'), 20000);

const ua = new JsSIP.UA({
  sockets: [new JsSIP.WebSocketInterface(process.env.SBC_URL)],
  uri: process.env.URI,
  password: process.env.PASSWORD,
  register: true,
  register_expires: 600,
  connection_recovery_min_interval: 30,
});

ua.on('registered', (e) => {
  process.stdout.write(JSON.stringify({ registered: true, status: e.response.status_code }) + '\n');
  setTimeout(() => ua.unregister(), hold);
});
ua.on('unregistered', () => { ua.stop(); finish(null); });
ua.on('registrationFailed', (e) => finish(`registration failed: ${e.cause} ${e.response ? e.response.status_code : ''}`));
ua.on('disconnected', (e) => finish(`disconnected: ${e.code || ''} ${e.reason || ''}`));
ua.start();
