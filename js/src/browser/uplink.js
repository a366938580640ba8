// The browser recorder's uplink, the native recorder's protocol (docs/ingest.md; vdbnb/recorder/uplink.py):
// R1/R3 with the client token, every fragment written to the IndexedDB spool before it is sent, sent over
// the ingest websocket, deleted once the server acks it (stored + fsynced); after a reconnect the server's
// hello says what it has and everything else is sent again, in seq order. A long outage keeps fragments in
// IndexedDB only (not in memory).
import { call, pickRoute } from "./routes.js";

const RETRY_CODES = new Set(["DISK_FULL", "STORAGE_ERROR"]); // the server cannot store it *now*: send again
const BACKOFF_CAP_MS = 2000;

const key = (cid, seq) => `${cid}\u0000${seq}`;

export class Uplink {
  // cfg: the panel's recorder trait; emit(kind, payload): to the recorder; needConfig(): a promise of a
  // fresh cfg (a new client token) from the kernel.
  constructor({ cfg, spool, emit, needConfig }) {
    Object.assign(this, { cfg, spool, emit, needConfig });
    this.sid = cfg.session_id;
    this.route = null;
    this.ws = null;
    this.connected = false;
    this.closing = false;
    this.pending = new Map();   // key -> {cid, seq, bytes|null}
    this.queue = [];            // keys to send on the current connection
    this.ackedLast = {};
    this.stats = { sent: 0, acked: 0, bytes_acked: 0, resent: 0, nacked: 0, reconnects: 0, submitted: 0 };
    this.rejected = [];
    this.maxSent = {};
    this.downSince = null;
    this.lastError = "";
    this.waiters = [];
  }

  async findRoute() {
    for (let attempt = 0; ; attempt++) {
      const { route, tried, auth, session } = await pickRoute(this.cfg);
      if (route) {
        this.status = session && session.status;
        if (!this.route || this.route.name !== route.name) this.emit("link", { route: route.name });
        this.route = route;
        return route;
      }
      if (auth && this.needConfig) {
        this.cfg = await this.needConfig("need-token");
        continue;
      }
      if (this.closing) throw new Error("closed");
      if (attempt === 2) {
        this.emit("error", { code: "INGEST_UNREACHABLE", message: `cannot reach the vdbnb server (${tried.join("; ")}); `
          + "fragments wait in this browser and are sent once it answers" });
      }
      await sleep(Math.min(BACKOFF_CAP_MS * 2, 250 * 2 ** attempt));
    }
  }

  // R1: the session's channels; then the ingest websocket runs in the background until close().
  async open(channels) {
    const route = this.route || await this.findRoute();
    const r = await call(route, "POST", "/capture/session/start", { session_id: this.sid, channels });
    if (r.status !== 200) {
      const msg = (r.body && r.body.message) || `HTTP ${r.status}`;
      const err = new Error(`the server refused to start the capture: ${msg}`);
      err.code = (r.body && r.body.error_code) || "START_REFUSED";
      throw err;
    }
    for (const [cid, last] of Object.entries(r.data.acked || {})) this.ackedLast[cid] = last;
    await this.spool.saveSession({ session_id: this.sid, token: this.cfg.token, expires_at: this.cfg.expires_at,
                                   api_url: this.cfg.api_url, proxy_path: this.cfg.proxy_path, reach: this.cfg.reach });
    this.run();
    return r.data;
  }

  // Resume a session this page left (a reload): no R1, only the websocket, until its spool is empty.
  async resume() {
    await this.loadPending();
    this.run();
  }

  async submit(frag, bytes) {
    await this.spool.put(this.sid, frag.channel_id, frag.seq, bytes);
    const k = key(frag.channel_id, frag.seq);
    this.stats.submitted += 1;
    this.pending.set(k, { cid: frag.channel_id, seq: frag.seq, bytes: this.connected ? bytes : null });
    if (this.connected) {
      this.queue.push(k);
      this.pump();
    }
  }

  unacked() {
    return this.pending.size;
  }

  // -------------------------------------------------------------------------------- the websocket
  async run() {
    let delay = 100;
    let first = true;
    while (!this.closing) {
      if (!this.route) {
        try { await this.findRoute(); } catch (e) { break; }
      }
      const ok = await this.session(first);
      if (ok) { first = false; delay = 100; }
      this.connected = false;
      if (this.closing) break;
      if (this.downSince === null) this.downSince = Date.now();
      this.emit("progress", this.progress());
      for (const p of this.pending.values()) p.bytes = null; // in IndexedDB: do not hold an outage in memory
      await sleep(delay);
      delay = Math.min(BACKOFF_CAP_MS, delay * 2);
      if (!ok) {
        // refused or unreachable: check the route (and the token) before the next try
        this.route = null;
      }
    }
  }

  // One connection: resolves true if it got as far as the server's hello.
  session(first) {
    return new Promise((resolve) => {
      let ws;
      let helloSeen = false;
      try {
        ws = new WebSocket(this.route.socket(this.sid));
      } catch (e) {
        this.lastError = String(e);
        resolve(false);
        return;
      }
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      const auth = this.route.auth && this.route.auth();
      if (auth) ws.onopen = () => ws.send(auth);
      const openTimer = setTimeout(() => { if (!helloSeen) ws.close(); }, 8000);
      ws.onmessage = async (ev) => {
        if (typeof ev.data !== "string") return;
        let m;
        try { m = JSON.parse(ev.data); } catch (e) { return; }
        if (m.type === "hello") {
          helloSeen = true;
          clearTimeout(openTimer);
          if (!first) this.stats.reconnects += 1;
          for (const [cid, last] of Object.entries(m.acked || {})) await this.acked(cid, last, true);
          await this.loadPending();
          this.connected = true;
          this.downSince = null;
          this.queue = [...this.pending.keys()].sort((a, b) => this.pending.get(a).seq - this.pending.get(b).seq);
          this.pump();
          this.emit("progress", this.progress());
        } else if (m.type === "ack") {
          this.onAck(m.channel_id, m.seq);
        } else if (m.type === "nack") {
          this.onNack(m);
        }
      };
      ws.onclose = () => {
        clearTimeout(openTimer);
        if (this.ws === ws) this.ws = null;
        this.connected = false;
        resolve(helloSeen);
      };
      ws.onerror = () => { this.lastError = "websocket error"; };
    });
  }

  async loadPending() {
    // fragments in IndexedDB that this page does not track (a reload, or a previous page of this session)
    for (const { channel_id, seq } of await this.spool.pending(this.sid)) {
      const k = key(channel_id, seq);
      if (!this.pending.has(k) && seq > (this.ackedLast[channel_id] ?? -1)) {
        this.pending.set(k, { cid: channel_id, seq, bytes: null });
      }
    }
  }

  async pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.connected && this.queue.length) {
        const k = this.queue.shift();
        const p = this.pending.get(k);
        if (!p) continue; // acked meanwhile
        let bytes = p.bytes;
        if (!bytes) bytes = await this.spool.get(this.sid, p.cid, p.seq);
        if (!bytes) { this.pending.delete(k); continue; }
        const ws = this.ws;
        if (!ws || ws.readyState !== WebSocket.OPEN) { this.queue.unshift(k); break; }
        ws.send(bytes);
        p.size = bytes.byteLength;
        p.bytes = null; // sent: IndexedDB has it until the ack
        this.stats.sent += 1;
        if (p.seq <= (this.maxSent[p.cid] ?? -1)) this.stats.resent += 1;
        else this.maxSent[p.cid] = p.seq;
        // keep the socket's buffer small: a slow link must not pile the whole queue into memory
        while (ws.bufferedAmount > 4 * 1024 * 1024 && ws.readyState === WebSocket.OPEN) await sleep(20);
      }
    } finally {
      this.pumping = false;
    }
  }

  async acked(cid, last) {
    this.ackedLast[cid] = Math.max(this.ackedLast[cid] ?? -1, last);
    for (const [k, p] of this.pending) if (p.cid === cid && p.seq <= last) this.pending.delete(k);
    if (last >= 0) await this.spool.prune(this.sid, cid, last);
  }

  onAck(cid, seq) {
    const k = key(cid, seq);
    const p = this.pending.get(k);
    if (p) {
      this.pending.delete(k);
      this.stats.acked += 1;
      this.stats.bytes_acked += p.size || 0;
    }
    this.spool.remove(this.sid, cid, seq).catch(() => {});
    if (seq === (this.ackedLast[cid] ?? -1) + 1) {
      let last = seq;
      while (last + 1 <= (this.maxSent[cid] ?? -1) && !this.pending.has(key(cid, last + 1))) last += 1;
      this.ackedLast[cid] = last;
    }
    this.progressMaybe();
    this.wake();
  }

  onNack(m) {
    const cid = m.channel_id, seq = m.seq;
    const k = key(cid, seq);
    if (RETRY_CODES.has(m.error_code) && this.pending.has(k)) {
      setTimeout(() => { if (this.pending.has(k) && this.connected) { this.queue.push(k); this.pump(); } }, 1000);
      this.emit("error", { code: m.error_code, channel_id: cid, message: `the server could not store ${cid}#${seq} `
        + `now (${m.message}); it stays in this browser and is sent again` });
      return;
    }
    this.stats.nacked += 1;
    this.rejected.push(m);
    if (cid != null && seq != null) {
      this.pending.delete(k);
      this.spool.reject(this.sid, cid, seq, `${m.error_code}: ${m.message}`).catch(() => {});
    }
    this.emit("error", { code: m.error_code || "NACK", channel_id: cid,
                         message: `the server rejected fragment ${cid}#${seq}: ${m.message}` });
    this.wake();
  }

  progress() {
    return { connected: this.connected, route: this.route && this.route.name, unacked: this.pending.size,
             acked: { ...this.ackedLast }, ...this.stats, down_s: this.downSince ? (Date.now() - this.downSince) / 1000 : 0 };
  }

  progressMaybe() {
    const now = Date.now();
    if (!this.lastProgress || now - this.lastProgress > 500 || this.pending.size === 0) {
      this.lastProgress = now;
      this.emit("progress", this.progress());
    }
  }

  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  // Wait (bounded) until the server has acknowledged everything submitted.
  async drain(timeoutMs) {
    const end = Date.now() + timeoutMs;
    while (this.pending.size && Date.now() < end) {
      await new Promise((r) => { this.waiters.push(r); setTimeout(r, 250); });
    }
    return this.pending.size === 0;
  }

  // R3.
  async stopSession() {
    const route = this.route || await this.findRoute();
    const r = await call(route, "POST", `/capture/session/${this.sid}/stop`, {});
    if (r.status !== 200) {
      throw new Error(`stop refused: ${(r.body && r.body.message) || "HTTP " + r.status}`);
    }
    return r.data;
  }

  close() {
    this.closing = true;
    if (this.ws) this.ws.close();
    this.wake();
  }
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
