// The page as the recorder, one per panel model (anywidget's initialize): shares screens and the microphone,
// encodes, cuts fragments and sends them through the uplink; tells the kernel what happens (it also sees it
// on the server, so a busy kernel misses nothing). The views (panel.js + view.js) only show it.
import { pack, Fragmenter } from "./fragments.js";
import { Shared, shareError } from "./share.js";
import { openSpool } from "./spool.js";
import { Uplink, sleep } from "./uplink.js";
import { VideoCapture } from "./video.js";
import { AudioCapture } from "./audio.js";

const ASK_TIMEOUT_MS = 20000;
const DRAIN_AT_STOP_MS = 60000;

export class BrowserRecorder {
  constructor(model) {
    this.model = model;
    this.shared = new Shared();
    this.shared.onEnded = (cid) => this.ended(cid);
    this.state = "idle";             // idle | shared | starting | recording | stopping | stopped
    this.captures = new Map();       // channel_id -> VideoCapture | AudioCapture
    this.frags = new Map();          // channel_id -> Fragmenter
    this.used = new Set();           // session ids recorded into (a new Start needs a new session)
    this.listeners = new Set();
    this.levelQ = {};
    this.seen = new Set();
    this.uplink = null;
    this.link = {};
    this.submitting = Promise.resolve();
    this.onCustom = (msg) => { if (msg && msg.type === "browser" && msg.cmd) this.command(msg); };
    model.on("msg:custom", this.onCustom);
    this.timer = setInterval(() => this.tick(), 250);
    this.resendLeftovers();
  }

  cfg() {
    return this.model.get("recorder") || {};
  }

  tell(event, payload = {}) {
    this.model.send({ type: "browser", event, ...payload });
  }

  notify(what, data) {
    for (const fn of this.listeners) {
      try { fn(what, data); } catch (e) { console.error("vdbnb view", e); }
    }
  }

  setState(s, detail) {
    this.state = s;
    this.notify("state", { state: s, detail });
  }

  error(code, message, channelId) {
    this.tell("error", { code, message, channel_id: channelId });
    this.notify("error", { code, message });
  }

  busy() {
    return ["starting", "recording", "stopping"].includes(this.state);
  }

  // ----------------------------------------------------------------------------- sharing (needs a click)
  async share(selected, { addScreen = false } = {}) {
    const want = new Set(selected && selected.length ? selected : ["display:1", "mic:default", "system_audio:default"]);
    const fps = (this.cfg().video || {}).fps || 2;
    const wantScreen = addScreen || [...want].some((c) => c.startsWith("display:"));
    const asks = [];
    if (wantScreen && (addScreen || !this.shared.displays.length)) {
      asks.push(this.shared.addDisplay({ fps, withAudio: want.has("system_audio:default") }));
    }
    if (want.has("mic:default") && !this.shared.mic) asks.push(this.shared.addMic());
    const res = await Promise.allSettled(asks);
    const failed = res.filter((r) => r.status === "rejected");
    for (const f of failed) {
      const e = shareError(f.reason);
      this.error(e.code, e.message);
    }
    if (this.shared.any()) {
      if (this.state === "idle" || this.state === "stopped") this.setState("shared");
      this.tell("shared", { channels: this.shared.channels() });
      this.notify("shared", this.shared);
    }
    if (!this.shared.any()) throw new Error("nothing shared");
  }

  // ----------------------------------------------------------------------------- recording
  async start(selected) {
    if (this.busy()) return;
    const prev = this.state;
    this.setState("starting");
    try {
      if (!this.shared.any() || (selected || []).some((c) => c.startsWith("display:")) && !this.shared.displays.length) {
        await this.share(selected);
      }
      let cfg = this.cfg();
      const fresh = () => this.ask("need-session", (c) => c.session_id && !this.used.has(c.session_id));
      if (!cfg.session_id || this.used.has(cfg.session_id)) cfg = await fresh();
      const spool = await openSpool();
      const uplink = () => new Uplink({ cfg, spool, emit: (k, p) => this.fromUplink(k, p), needConfig: (what) =>
        this.ask(what, (c) => c.token && c.token !== (this.uplink && this.uplink.cfg.token)) });
      this.uplink = uplink();
      await this.uplink.findRoute();
      if (["stopped", "exported", "failed"].includes(this.uplink.status)) { // recorded before this page loaded
        this.used.add(cfg.session_id);
        cfg = await fresh();
        this.uplink = uplink();
      }
      const sid = cfg.session_id;
      this.used.add(sid);
      const chosen = new Set(this.model.get("selected") || []);
      let chans = this.shared.channels().filter((c) => this.shared.live(c.channel_id));
      if (chans.some((c) => chosen.has(c.channel_id))) chans = chans.filter((c) => chosen.has(c.channel_id));
      if (!chans.length) throw Object.assign(new Error("nothing to record: share a screen or the microphone"), { code: "NO_CHANNELS" });
      const firstDisplay = chans.find((c) => c.type === "video");
      await this.uplink.open(chans.map((c) => ({ channel_id: c.channel_id, type: c.type, name: c.name, store: true,
                                                 is_primary: firstDisplay ? c.channel_id === firstDisplay.channel_id : false })));
      this.frags.clear();
      this.captures.clear();
      this.seq0 = {};
      for (const c of chans) this.captures.set(c.channel_id, this.capture(c, cfg));
      for (const cap of this.captures.values()) await cap.start();
      this.sessionId = sid;
      this.startedAt = Date.now();
      this.setState("recording");
      this.tell("started", { session_id: sid, channels: chans.map((c) => c.channel_id), route: this.uplink.route.name });
    } catch (e) {
      if (this.uplink) { this.uplink.close(); this.uplink = null; }
      for (const cap of this.captures.values()) cap.stop().catch(() => {});
      this.captures.clear();
      this.setState(this.shared.any() ? "shared" : prev === "stopped" ? "stopped" : "idle");
      if (e.message !== "nothing shared") this.error(e.code || "START", `start failed: ${e.message}`);
    }
  }

  capture(c, cfg) {
    const v = cfg.video || {}, a = cfg.audio || {};
    const track = this.shared.track(c.channel_id);
    const onError = (code, message) => this.error(code, message, c.channel_id);
    if (c.type === "video") {
      return new VideoCapture({
        track, channelId: c.channel_id, fps: v.fps || 2, gopS: v.gop_s || 120, heartbeatS: v.heartbeat_s || 60,
        codec: v.codec || null, masks: cfg.masks || [], onError, frameClock: this.shared.display(c.channel_id).frameClock,
        onFrame: () => this.seen.add(c.channel_id),
        onPackets: (pk, codec, info) => this.video(c.channel_id, pk, codec, info),
        onTick: (now) => { const fr = this.frags.get(c.channel_id); if (fr) this.submitAll(fr.tick(now)); },
      });
    }
    return new AudioCapture({
      track, channelId: c.channel_id, bitrate: a.bitrate || 24000, frameMs: a.frame_ms || 60, onError,
      onLevel: (ts, rms, peak) => this.level(c.channel_id, ts, rms, peak),
      onPackets: (pk, info) => {
        let fr = this.frags.get(c.channel_id);
        if (!fr) this.frags.set(c.channel_id, fr = new Fragmenter(c.channel_id, "audio", "opus", info, { maxS: 0.25 }));
        this.submitAll(fr.add(pk));
      },
    });
  }

  video(cid, packets, codec, info) {
    let fr = this.frags.get(cid);
    if (!fr) this.frags.set(cid, fr = new Fragmenter(cid, "video", codec, info, { maxS: (this.cfg().video || {}).fragment_s || 2 }));
    if (fr.codec !== codec || fr.codecInfo.width !== info.width || fr.codecInfo.height !== info.height) {
      this.submitAll(fr.endGop()); // a resized window: a new encoder, a new GOP
      fr.codec = codec;
      fr.codecInfo = info;
    }
    this.submitAll(fr.add(packets, { app: "browser" }));
  }

  submitAll(frags) {
    for (const f of frags) {
      const bytes = pack(f);
      const up = this.uplink;
      this.submitting = this.submitting.then(() => up.submit(f, bytes)).catch((e) =>
        this.error("SPOOL", `could not keep fragment ${f.channel_id}#${f.seq} in IndexedDB: ${e.message}`));
    }
  }

  level(cid, ts, rms, peak) {
    this.seen.add(cid);
    (this.levelQ[cid] = this.levelQ[cid] || []).push([Math.round(ts * 1e4) / 1e4, +rms.toFixed(5), +peak.toFixed(5)]);
    this.notify("level", { channel_id: cid, rms, peak });
  }

  tick() {
    const now = Date.now();
    if (Object.keys(this.levelQ).length && this.busy()) this.tell("levels", { samples: this.levelQ });
    this.levelQ = {};
    if (!this.lastAlive || now - this.lastAlive > 1000) {
      this.lastAlive = now;
      if (this.seen.size && this.busy()) this.tell("alive", { channels: [...this.seen] });
      this.seen = new Set();
    }
  }

  fromUplink(kind, p) {
    if (kind === "error") this.error(p.code, p.message, p.channel_id);
    else if (kind === "progress" || kind === "link") {
      this.link = { ...this.link, ...p };
      this.notify("link", this.link);
    }
  }

  // The browser's own "Stop sharing" (or an unplugged microphone).
  ended(cid) {
    if (!this.busy()) {
      this.notify("shared", this.shared);
      return;
    }
    const cap = this.captures.get(cid);
    if (cap) {
      cap.stop().then(() => { const fr = this.frags.get(cid); if (fr) this.submitAll(fr.flush()); });
    }
    const anyDisplay = this.shared.displays.some((d) => d.track.readyState === "live");
    if (cid.startsWith("display:") && !anyDisplay) this.stop("the browser's Stop sharing");
    else if (cid.startsWith("display:") || cid === "mic:default") {
      this.error("CHANNEL_LOST", `${cid} ended (stopped from the browser or the device went away); the rest records on`, cid);
    }
  }

  async stop(reason = "Stop") {
    if (this.state !== "recording" && this.state !== "starting") return;
    this.setState("stopping", reason);
    const up = this.uplink;
    await Promise.all([...this.captures.values()].map((c) => c.stop().catch(() => {})));
    for (const fr of this.frags.values()) this.submitAll(fr.flush());
    await this.submitting;
    const drained = await up.drain(DRAIN_AT_STOP_MS);
    this.shared.stopAll();      // release the screen and the microphone at once
    this.notify("shared", this.shared);
    const summary = () => ({
      session_id: up.sid, reason, fragments: up.stats.submitted, acked: up.stats.acked, unacked: up.unacked(),
      bytes: up.stats.bytes_acked, reconnects: up.stats.reconnects, resent: up.stats.resent,
      link: up.route && up.route.name,
      codec: Object.fromEntries([...this.frags].map(([cid, f]) => [cid, f.codec])),
      video: Object.fromEntries([...this.captures].filter(([, c]) => c.stats.frames !== undefined).map(([cid, c]) => [cid, c.stats])),
    });
    if (!drained) {
      // the link is down: keep sending from IndexedDB in the background; stop the session once all is in
      this.tell("stopped", { ...summary(), pending: true });
      this.setState("stopped", "uploading the rest in the background");
      this.finishLater(up, reason, summary);
      return;
    }
    await this.finish(up, reason, summary);
  }

  async finish(up, reason, summary) {
    try {
      await up.stopSession();
    } catch (e) {
      this.error("STOP", `the server did not take the stop: ${e.message}`);
    }
    up.close();
    try { await (await openSpool()).forgetIfEmpty(up.sid); } catch (e) { /* nothing to forget */ }
    if (this.uplink === up) this.uplink = null;
    this.setState("stopped", reason);
    this.tell("stopped", summary());
  }

  async finishLater(up, reason, summary) {
    while (!(await up.drain(5000))) { /* keep waiting: nothing is dropped */ }
    await this.finish(up, reason, summary);
  }

  pause(cid, paused) {
    const cap = this.captures.get(cid);
    if (cap) cap.paused = paused;
  }

  command(msg) {
    if (msg.cmd === "start") this.start(msg.channels || []);
    else if (msg.cmd === "stop") this.stop("stopped from the kernel");
    else if (msg.cmd === "pause") this.pause(msg.channel_id, true);
    else if (msg.cmd === "resume") this.pause(msg.channel_id, false);
  }

  // Ask the kernel (a new session, a fresh token) and wait for the recorder trait to change accordingly.
  ask(event, ok) {
    return new Promise((resolve, reject) => {
      const done = () => {
        const c = this.cfg();
        if (ok(c)) { cleanup(); resolve(c); }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(Object.assign(new Error("the kernel did not answer (is a cell still running? run the capture "
          + "when the kernel is idle)"), { code: "KERNEL_BUSY" }));
      }, ASK_TIMEOUT_MS);
      const cleanup = () => { clearTimeout(timer); this.model.off("change:recorder", done); };
      this.model.on("change:recorder", done);
      this.tell(event, { session_id: this.cfg().session_id });
    });
  }

  // A page that was reloaded (or closed) while fragments waited: send them now, with the session's saved token.
  async resendLeftovers() {
    try {
      const spool = await openSpool();
      for (const s of await spool.sessions()) {
        if ((await spool.pending(s.session_id)).length === 0) { await spool.forgetIfEmpty(s.session_id); continue; }
        if (s.expires_at && s.expires_at * 1000 < Date.now()) continue; // its token expired: nothing can send it
        if (this.uplink && this.uplink.sid === s.session_id) continue;
        const up = new Uplink({ cfg: s, spool, emit: () => {}, needConfig: null });
        await up.resume();
        (async () => {
          while (!(await up.drain(5000))) await sleep(1000);
          up.close();
          await spool.forgetIfEmpty(s.session_id);
        })();
      }
    } catch (e) {
      console.warn("vdbnb: leftover fragments could not be checked", e);
    }
  }

  destroy() {
    clearInterval(this.timer);
    this.model.off("msg:custom", this.onCustom);
    if (this.busy()) this.stop("the panel was closed");
    else this.shared.stopAll();
  }
}
