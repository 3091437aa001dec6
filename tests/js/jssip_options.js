// JsSIP 3.13 in Node as a real SIP-over-WebSocket peer (RFC 7118): connects to SBC_URL (ws:// or wss://; a test CA
// comes in through NODE_EXTRA_CA_CERTS), sends COUNT OPTIONS to TARGET one after the other over its one
// WebSocket, and prints one JSON line: {"statuses": [...], "error": null}. Exits 0 when every OPTIONS got a final
// response, 1 otherwise (the line says why); gives up after 20 s.
'use strict';

global.WebSocket = require('ws');
const JsSIP = require('jssip');

const url = process.env.SBC_URL;
const target = process.env.TARGET;
const count = Number(process.env.COUNT || '1');
const statuses = [];

function finish(error) {
  process.stdout.write(JSON.stringify({ statuses, error }) + '\n');
  process.exit(error ? 1 : 0);
}

setTimeout(() => finish(`timeout after 20 s (${statuses.length} of ${count} answered)`), 20000);

const socket = new JsSIP.WebSocketInterface(url);
const ua = new JsSIP.UA({
  sockets: [socket],
  uri: 'sip:webphone@sbc.example.test',
  register: false,
  connection_recovery_min_interval: 30,
});

function next() {
  if (statuses.length === count) {
    ua.stop();
    finish(null);
    return;
  }
  ua.sendOptions(target, null, {
    eventHandlers: {
      succeeded: (e) => { statuses.push(e.response.status_code); next(); },
      failed: (e) => {
        if (e.response) { statuses.push(e.response.status_code); next(); } else { finish(`no response: ${e.cause}`); }
      },
    },
  });
}

ua.on('connected', next);
ua.on('disconnected', (e) => { if (statuses.length < count) finish(`disconnected: ${e.code || ''} ${e.reason || ''}`); });
ua.start();
