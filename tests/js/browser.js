// A real browser softphone for the integration tests: headless Chromium (Debian `chromium`) driven by
// puppeteer-core, with JsSIP 3.13 in the page. tests/src/browser.rs starts it inside a test's network namespace
// (`ip netns exec`) and speaks JSON lines with it:
//
// - stdin, one command a line: {"id": N, "cmd": NAME, ...args}; stdout: {"id": N, "ok": true, "result": ...} or
//   {"id": N, "ok": false, "error": "..."} once the command is done, and {"event": NAME, ...} lines whenever JsSIP
//   says something (connected, disconnected, registered, registrationFailed, newRTCSession, progress, confirmed,
//   failed, ended, console). The first line is {"event": "ready", "chromium_pid": P, "origin": ORIGIN}.
// - commands: media (getUserMedia, the fake WAV), connect {url, uri, password?, register?}, options {target},
//   register, call {target}, answer, hangup, dropMedia (close the call's RTCPeerConnection, no BYE), stats
//   (getStats() of the call), sdp (local and remote SDP), close.
//
// The page is https://ORIGIN/ served by request interception (no server socket: the test's Origin is whatever the
// SBC's allowlist says, and an https page is a secure context, which getUserMedia needs). The JsSIP bundle is built
// here with esbuild from node_modules/jssip (the npm package ships no browser bundle). Environment: CHROMIUM
// (/usr/bin/chromium), ORIGIN (https://phone.example.test), WAV (the fake microphone), SPKI (base64 SHA-256 of the
// SBC certificate's SubjectPublicKeyInfo: trusted for wss: without a CA), PROFILE (user data dir), LIMIT_S (the
// whole run is bounded: after that the script closes Chromium and exits 3).
'use strict';

const path = require('path');
const readline = require('readline');
const esbuild = require('esbuild');
const puppeteer = require('puppeteer-core');

const origin = process.env.ORIGIN || 'https://phone.example.test';
const limitS = Number(process.env.LIMIT_S || '120');
let browser = null;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function shutdown(code) {
  try {
    if (browser) await browser.close();
  } catch (_) {
    if (browser && browser.process()) browser.process().kill('SIGKILL');
  }
  process.exit(code);
}

setTimeout(() => { out({ event: 'limit', seconds: limitS }); shutdown(3); }, limitS * 1000).unref();

const jssip = esbuild.buildSync({
  entryPoints: [path.join(__dirname, 'node_modules/jssip/lib/JsSIP.js')],
  bundle: true, format: 'iife', globalName: 'JsSIP', platform: 'browser', minify: true, write: false,
}).outputFiles[0].text;

// The page's phone: one UA, one call at a time; remote audio goes to an <audio> element so that Chromium decodes it
// (audioLevel in getStats() needs a playing track).
const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>sbc test phone</title>
<script>${jssip}</script></head><body><audio id="remote" autoplay></audio><script>
'use strict';
const phone = { ua: null, session: null, stream: null };
function note(name, extra) { window.emit(JSON.stringify(Object.assign({ event: name }, extra || {}))); }
function status(e) {
  return { status: e && e.response ? e.response.status_code : null, cause: e ? e.cause || null : null,
           originator: e ? e.originator || null : null };
}
phone.media = async () => {
  phone.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  return phone.stream.getAudioTracks().map((t) => ({ kind: t.kind, label: t.label, state: t.readyState }));
};
function track(s) {
  phone.session = s;
  for (const name of ['progress', 'accepted', 'confirmed', 'failed', 'ended']) {
    s.on(name, (e) => note(name, status(e)));
  }
  const play = (pc) => {
    pc.addEventListener('track', (t) => {
      document.getElementById('remote').srcObject = t.streams[0] || new MediaStream([t.track]);
    });
  };
  s.on('peerconnection', (e) => play(e.peerconnection));
  // An outgoing call's 'peerconnection' event fires inside ua.call(), before this runs: listen on its connection.
  if (s.connection) play(s.connection);
}
phone.connect = (a) => new Promise((resolve, reject) => {
  const ua = new JsSIP.UA({ sockets: [new JsSIP.WebSocketInterface(a.url)], uri: a.uri, password: a.password,
    register: !!a.register, connection_recovery_min_interval: 30, session_timers: false });
  phone.ua = ua;
  ua.on('connected', () => { note('connected'); resolve(true); });
  ua.on('disconnected', (e) => { note('disconnected', { code: e.code || null, reason: e.reason || null });
                                 reject(new Error('websocket closed: ' + (e.code || '') + ' ' + (e.reason || ''))); });
  ua.on('registered', () => note('registered'));
  ua.on('unregistered', () => note('unregistered'));
  ua.on('registrationFailed', (e) => note('registrationFailed', status(e)));
  ua.on('newRTCSession', (e) => {
    note('newRTCSession', { originator: e.originator });
    if (e.originator === 'remote') track(e.session);
  });
  ua.start();
});
phone.options = (a) => new Promise((resolve) => {
  phone.ua.sendOptions(a.target, null, { eventHandlers: {
    succeeded: (e) => resolve({ status: e.response.status_code }),
    failed: (e) => resolve(status(e)),
  } });
});
phone.register = () => { phone.ua.register(); return true; };
phone.call = (a) => {
  const s = phone.ua.call(a.target, { mediaStream: phone.stream || undefined,
    mediaConstraints: { audio: true, video: false }, pcConfig: { iceServers: [] } });
  track(s);
  return true;
};
phone.answer = () => {
  phone.session.answer({ mediaStream: phone.stream || undefined, mediaConstraints: { audio: true, video: false },
                         pcConfig: { iceServers: [] } });
  return true;
};
// The call's media goes (its RTCPeerConnection closed) while JsSIP and its WebSocket stay: what the SBC sees of a
// browser whose media path died without a BYE.
phone.dropMedia = () => { phone.session.connection.close(); return true; };
phone.hangup = () => { if (phone.session && !phone.session.isEnded()) phone.session.terminate(); return true; };
phone.sdp = () => {
  const pc = phone.session && phone.session.connection;
  return { local: pc && pc.localDescription ? pc.localDescription.sdp : null,
           remote: pc && pc.remoteDescription ? pc.remoteDescription.sdp : null };
};
phone.stats = async () => {
  const pc = phone.session && phone.session.connection;
  if (!pc) return { inbound: null, outbound: null };
  const r = { inbound: null, outbound: null };
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      r.inbound = { packetsReceived: s.packetsReceived, audioLevel: s.audioLevel ?? null, packetsLost: s.packetsLost };
    }
    if (s.type === 'outbound-rtp' && s.kind === 'audio') r.outbound = { packetsSent: s.packetsSent };
  });
  return r;
};
window.phone = phone;
</script></body></html>`;

async function main() {
  const args = [
    '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    '--autoplay-policy=no-user-gesture-required',
  ];
  if (process.env.WAV) args.push(`--use-file-for-fake-audio-capture=${process.env.WAV}`);
  if (process.env.SPKI) args.push(`--ignore-certificate-errors-spki-list=${process.env.SPKI}`);
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args,
    userDataDir: process.env.PROFILE || undefined,
    protocolTimeout: 30000,
    handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
  });
  const page = await browser.newPage();
  page.on('console', (m) => out({ event: 'console', type: m.type(), text: m.text() }));
  page.on('pageerror', (e) => out({ event: 'pageerror', text: String(e) }));
  await page.exposeFunction('emit', (json) => out(JSON.parse(json)));
  await page.setRequestInterception(true);
  page.on('request', (r) => {
    if (r.url().startsWith(origin + '/')) {
      r.respond({ status: 200, contentType: 'text/html; charset=utf-8', body: PAGE });
    } else {
      r.abort();
    }
  });
  await page.goto(origin + '/', { waitUntil: 'load', timeout: 30000 });
  out({ event: 'ready', chromium_pid: browser.process().pid, origin, version: await browser.version() });

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (e) {
      out({ id: null, ok: false, error: `not JSON: ${line}` });
      continue;
    }
    if (cmd.cmd === 'close') {
      out({ id: cmd.id, ok: true, result: true });
      await shutdown(0);
    }
    try {
      // page.evaluate awaits the page's promise; its value comes back as JSON.
      const result = await page.evaluate((c) => {
        const f = window.phone[c.cmd];
        if (typeof f !== 'function') throw new Error(`unknown command ${c.cmd}`);
        return f(c);
      }, cmd);
      out({ id: cmd.id, ok: true, result });
    } catch (e) {
      out({ id: cmd.id, ok: false, error: String(e && e.message ? e.message : e) });
    }
  }
  await shutdown(0);
}

main().catch((e) => { out({ event: 'fatal', error: String(e && e.stack ? e.stack : e) }); shutdown(2); });
