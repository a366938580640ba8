// vdbnb CapturePanel front end (anywidget ESM).
// Synced traits (Python -> here): channels, selected, paused, state, session_id, counts, transcript,
// alerts, cells, errors, stale, status. High-rate data arrives as custom messages:
//   {type: "thumb", channel_id, ts, width, height} + buffers[0] = JPEG bytes (binary, never base64)
//   {type: "levels", levels: {channel_id: {rms, peak, ts}}}
// User actions go back as {type: "action", action, channels?, channel_id?}.
// With the browser as the recorder (recorder trait kind "browser"), browser/recorder.js records in this page
// and browser/view.js shows its streams; Start/Stop act here, then tell the kernel.
import "./panel.css";
import { BrowserRecorder } from "./browser/recorder.js";
import { BrowserView } from "./browser/view.js";

const recorders = new WeakMap(); // model -> BrowserRecorder (one per panel, whatever the number of views)

function browserRecorder(model) {
  if ((model.get("recorder") || {}).kind !== "browser") return null;
  let r = recorders.get(model);
  if (!r) recorders.set(model, r = new BrowserRecorder(model));
  return r;
}

function initialize({ model }) {
  const r = browserRecorder(model);
  return () => { if (r) { r.destroy(); recorders.delete(model); } };
}

const DB_FLOOR = -60;

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function toDb(x) {
  if (!(x > 0)) return DB_FLOOR;
  return Math.max(DB_FLOOR, 20 * Math.log10(x));
}

function pct(x) {
  return ((toDb(x) - DB_FLOOR) / -DB_FLOOR) * 100;
}

const STATE_LABEL = {
  idle: "idle", previewing: "previewing", starting: "starting…", recording: "recording",
  paused: "paused", stopping: "stopping…", stopped: "stopped", failed: "failed", error: "error",
};

function render({ model, el }) {
  const root = h("div", "vdbnb-panel");
  el.appendChild(root);
  const counters = { thumbFrames: 0, levelUpdates: 0 };
  root.dataset.thumbFrames = "0";
  root.dataset.levelUpdates = "0";

  // ---- header -------------------------------------------------------------------------------
  const header = h("div", "vdbnb-header");
  const title = h("div", "vdbnb-title");
  title.append(h("span", "vdbnb-logo", "●"), h("span", null, "vdbnb capture"));
  const pill = h("span", "vdbnb-state");
  const sess = h("span", "vdbnb-session");
  const status = h("span", "vdbnb-status");
  header.append(title, pill, sess, status);

  const staleBox = h("div", "vdbnb-stale");
  const errBox = h("div", "vdbnb-errors");

  // ---- channels -----------------------------------------------------------------------------
  const displays = h("div", "vdbnb-displays");
  const audios = h("div", "vdbnb-audios");
  const kernels = h("div", "vdbnb-kernels"); // the notebook kernel as a channel (cells), opt-in
  const kernelHead = h("div", "vdbnb-section", "Notebook");
  const chanViews = new Map(); // channel_id -> {card, img, meter, ...}

  // ---- controls -----------------------------------------------------------------------------
  const controls = h("div", "vdbnb-controls");
  const startBtn = h("button", "vdbnb-btn vdbnb-start", "● Start");
  const stopBtn = h("button", "vdbnb-btn vdbnb-stop", "■ Stop");
  const selInfo = h("span", "vdbnb-selinfo");
  controls.append(startBtn, stopBtn, selInfo);
  const rec = browserRecorder(model);
  startBtn.addEventListener("click", () => {
    if (rec) rec.start(model.get("selected") || []); // the browser shares only inside this click
    else model.send({ type: "action", action: "start", channels: model.get("selected") || [] });
  });
  stopBtn.addEventListener("click", () => {
    if (rec) rec.stop();
    else model.send({ type: "action", action: "stop" });
  });

  // ---- results ------------------------------------------------------------------------------
  const lower = h("div", "vdbnb-lower");
  const tBox = h("div", "vdbnb-transcript");
  const tHead = h("div", "vdbnb-section", "Transcript");
  const tList = h("div", "vdbnb-tlines");
  tBox.append(tHead, tList);
  const side = h("div", "vdbnb-side");
  const countsBox = h("div", "vdbnb-counts");
  const alertsBox = h("div", "vdbnb-alerts");
  side.append(h("div", "vdbnb-section", "Events"), countsBox, alertsBox);
  lower.append(tBox, side);

  root.append(header, staleBox, errBox, h("div", "vdbnb-section", "Screens"), displays,
    h("div", "vdbnb-section", "Audio"), audios, kernelHead, kernels, controls, lower);

  // ---- renderers ----------------------------------------------------------------------------
  function recording() {
    const s = model.get("state");
    return s === "recording" || s === "paused" || s === "starting" || s === "stopping" || (!!bv && bv.busy());
  }

  function renderChannels() {
    const chans = model.get("channels") || [];
    const selected = new Set(model.get("selected") || []);
    const paused = new Set(model.get("paused") || []);
    const seen = new Set();
    for (const ch of chans) {
      const id = ch.channel_id;
      seen.add(id);
      let v = chanViews.get(id);
      const isVideo = ch.type === "video";
      const isKernel = ch.type === "kernel";
      if (!v) {
        v = { card: h("div", "vdbnb-card " + (isVideo ? "vdbnb-video" : isKernel ? "vdbnb-kernel" : "vdbnb-audio")) };
        v.card.dataset.channelId = id;
        const top = h("label", "vdbnb-cardtop");
        v.check = h("input");
        v.check.type = "checkbox";
        v.check.addEventListener("change", () => {
          const cur = new Set(model.get("selected") || []);
          if (v.check.checked) cur.add(id); else cur.delete(id);
          model.set("selected", chans.map((c) => c.channel_id).filter((c) => cur.has(c)));
          model.save_changes();
        });
        v.name = h("span", "vdbnb-chname");
        v.kind = h("span", "vdbnb-chkind");
        v.pause = h("button", "vdbnb-btn vdbnb-mini vdbnb-pause", "❚❚");
        v.pause.title = "pause / resume this channel";
        v.pause.addEventListener("click", (e) => {
          e.preventDefault();
          const isPaused = (model.get("paused") || []).includes(id);
          model.send({ type: "action", action: isPaused ? "resume" : "pause", channel_id: id });
        });
        top.append(v.check, v.name, v.kind, v.pause);
        v.card.append(top);
        if (isVideo) {
          v.frame = h("div", "vdbnb-thumb");
          v.img = h("img");
          v.img.alt = id;
          v.placeholder = h("div", "vdbnb-placeholder", "waiting for frames…");
          v.frame.append(v.img, v.placeholder);
          v.meta = h("div", "vdbnb-meta");
          v.card.append(v.frame, v.meta);
          v.url = null;
        } else if (isKernel) {
          v.cells = h("div", "vdbnb-cells");
          v.meta = h("div", "vdbnb-meta", "records each cell you run while recording (off unless ticked)");
          v.card.append(v.cells, v.meta);
        } else {
          v.meter = h("div", "vdbnb-meter");
          v.bar = h("div", "vdbnb-bar");
          v.peak = h("div", "vdbnb-peak");
          v.meter.append(v.bar, v.peak);
          v.db = h("div", "vdbnb-meta", "– dB");
          v.card.append(v.meter, v.db);
        }
        (isVideo ? displays : isKernel ? kernels : audios).appendChild(v.card);
        chanViews.set(id, v);
      }
      v.name.textContent = ch.name || id;
      v.name.title = `${ch.name || id} (${id})`;
      v.kind.textContent = ch.category || (isVideo ? "screen" : isKernel ? "kernel" : "audio");
      v.check.checked = selected.has(id);
      v.check.disabled = recording();
      v.card.classList.toggle("vdbnb-off", !selected.has(id));
      v.card.classList.toggle("vdbnb-paused", paused.has(id));
      v.pause.textContent = paused.has(id) ? "▶" : "❚❚";
      v.pause.style.display = !isKernel && recording() && selected.has(id) ? "" : "none";
    }
    for (const [id, v] of chanViews) {
      if (!seen.has(id)) {
        if (v.url) URL.revokeObjectURL(v.url);
        v.card.remove();
        chanViews.delete(id);
      }
    }
    const n = (model.get("selected") || []).length;
    selInfo.textContent = `${n} of ${chans.length} channels selected`;
    kernelHead.style.display = kernels.childElementCount ? "" : "none";
    renderCells();
    if (bv) bv.decorate();
  }

  function renderCells() {
    const cells = model.get("cells") || [];
    const n = (model.get("counts") || {}).cells || 0;
    for (const v of chanViews.values()) {
      if (!v.cells) continue;
      v.card.dataset.cells = String(n);
      v.cells.replaceChildren();
      for (const c of cells) {
        const row = h("div", "vdbnb-cell vdbnb-cell-" + (c.status || "ok"));
        const mark = c.status === "error" ? "✗" : c.status === "private" ? "∅" : "✓";
        row.append(h("span", "vdbnb-cellmark", mark),
          h("span", "vdbnb-cellnum", c.n !== null && c.n !== undefined ? `[${c.n}]` : "[ ]"),
          h("span", "vdbnb-celltext", c.status === "private" ? "a private cell ran"
            : c.status === "error" ? `${c.ename || "error"} · ${c.line || ""}` : c.line || ""));
        v.cells.append(row);
      }
      if (n) v.meta.textContent = `${n} cell${n === 1 ? "" : "s"} recorded`;
    }
  }

  function renderState() {
    const busy = bv && bv.busy() ? bv.recorder.state : null; // the page records: its state is the freshest
    const s = busy || model.get("state") || "idle";
    pill.textContent = STATE_LABEL[s] || s;
    pill.className = "vdbnb-state vdbnb-state-" + s;
    root.dataset.state = s;
    const sid = model.get("session_id");
    sess.textContent = sid ? sid : "";
    status.textContent = model.get("status") || "";
    const rec = recording();
    startBtn.disabled = rec || (model.get("selected") || []).length === 0;
    stopBtn.disabled = !rec;
    renderChannels();
    if (bv) bv.renderButtons(startBtn, stopBtn);
  }

  function renderStale() {
    const st = model.get("stale") || [];
    staleBox.replaceChildren();
    staleBox.style.display = st.length ? "" : "none";
    for (const s of st) {
      const row = h("div", "vdbnb-stale-row");
      row.append(h("b", null, "⚠ stale: "), document.createTextNode(s.message || s.what));
      staleBox.append(row);
      const v = chanViews.get(s.channel_id);
      if (v) v.card.classList.add("vdbnb-card-stale");
    }
    const staleIds = new Set(st.map((s) => s.channel_id));
    for (const [id, v] of chanViews) if (!staleIds.has(id)) v.card.classList.remove("vdbnb-card-stale");
  }

  function renderErrors() {
    const errs = model.get("errors") || [];
    errBox.replaceChildren();
    errBox.style.display = errs.length ? "" : "none";
    for (const e of errs.slice(-4)) {
      const row = h("div", "vdbnb-error-row");
      row.append(h("b", null, (e.code ? e.code + ": " : "") + (e.message || "error")));
      if (e.hint) row.append(h("div", "vdbnb-hint", "What to do: " + e.hint));
      errBox.append(row);
    }
  }

  function renderTranscript() {
    const lines = model.get("transcript") || [];
    tList.replaceChildren();
    if (!lines.length) {
      tList.append(h("div", "vdbnb-empty", recording() ? "listening…" : "no transcript yet"));
    }
    for (const l of lines) {
      const row = h("div", "vdbnb-tline " + (l.is_final ? "vdbnb-final" : "vdbnb-interim"));
      if (l.t !== null && l.t !== undefined) row.append(h("span", "vdbnb-tt", fmtT(l.t)));
      if (l.channel_id) row.append(h("span", "vdbnb-tch", l.channel_id));
      row.append(h("span", "vdbnb-ttext", l.text || ""));
      tList.append(row);
    }
    tList.scrollTop = tList.scrollHeight;
  }

  function fmtT(t) {
    const m = Math.floor(t / 60), s = Math.floor(t % 60);
    return `${m}:${String(s).padStart(2, "0")}`;
  }

  function renderCounts() {
    const c = model.get("counts") || {};
    countsBox.replaceChildren();
    const items = [["transcript", "transcript"], ["index", "index events"], ["alerts", "alerts"]];
    for (const [k, label] of items) {
      const b = h("div", "vdbnb-count vdbnb-count-" + k);
      b.dataset.key = k;
      b.append(h("div", "vdbnb-num", String(c[k] || 0)), h("div", "vdbnb-lbl", label));
      countsBox.append(b);
    }
    const al = model.get("alerts") || [];
    alertsBox.replaceChildren();
    for (const a of al.slice(-4)) {
      const row = h("div", "vdbnb-alert-row");
      row.append(h("b", null, "🔔 " + (a.label || "alert")), document.createTextNode(" " + (a.text || "")));
      alertsBox.append(row);
    }
  }

  // ---- high-rate custom messages --------------------------------------------------------------
  function onThumb(msg, buffers) {
    const v = chanViews.get(msg.channel_id);
    if (!v || !v.img || !buffers || !buffers.length) return;
    const b = buffers[0];
    const bytes = b instanceof DataView ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
      : b instanceof ArrayBuffer ? new Uint8Array(b) : b;
    const url = URL.createObjectURL(new Blob([bytes], { type: "image/jpeg" }));
    const old = v.url;
    v.url = url;
    v.img.onload = () => { if (old) URL.revokeObjectURL(old); };
    v.img.src = url;
    v.placeholder.style.display = "none";
    const now = performance.now();
    v.times = (v.times || []).filter((x) => now - x < 2000);
    v.times.push(now);
    const fps = v.times.length > 1 ? (v.times.length - 1) / ((now - v.times[0]) / 1000) : 0;
    v.meta.textContent = `${msg.width}×${msg.height} · ${fps.toFixed(1)} fps`;
    v.frames = (v.frames || 0) + 1;
    v.card.dataset.frames = String(v.frames);
    counters.thumbFrames += 1;
    root.dataset.thumbFrames = String(counters.thumbFrames);
  }

  // Level samples are replayed on the browser's clock with a small jitter buffer, so a burst of blocks
  // (busy CPU, bursty audio path) still moves the meter smoothly at the source's rate.
  const JITTER = 0.12; // s
  const meterQ = new Map(); // channel_id -> [[ts, rms, peak], ...]
  let offset = null; // browser_seconds - source_ts, smallest seen (least-delayed sample)
  let offsetAt = 0;
  let raf = null;

  // Meter ballistics: the bar rises at once and falls at DECAY dB/s; the peak mark holds for HOLD s.
  const DECAY = 36, HOLD = 0.8;
  function drawMeter(id, rms, peak) {
    const v = chanViews.get(id);
    if (!v || !v.meter) return;
    const now = performance.now() / 1000;
    const dt = v.drawnAt ? now - v.drawnAt : 0;
    v.drawnAt = now;
    const db = toDb(rms);
    v.shownDb = Math.max(db, (v.shownDb ?? DB_FLOOR) - DECAY * dt);
    const pdb = toDb(peak);
    if (pdb >= (v.peakDb ?? DB_FLOOR)) { v.peakDb = pdb; v.peakAt = now; }
    else if (now - (v.peakAt || 0) > HOLD) v.peakDb = Math.max(pdb, v.peakDb - DECAY * dt);
    v.peakDb = Math.max(v.peakDb, v.shownDb);
    const w = (v.shownDb - DB_FLOOR) / -DB_FLOOR * 100;
    v.bar.style.width = (100 - w).toFixed(1) + "%"; // the bar covers the part of the scale above the level
    v.peak.style.left = `calc(${((v.peakDb - DB_FLOOR) / -DB_FLOOR * 100).toFixed(1)}% - 2px)`;
    v.peak.style.opacity = v.peakDb > DB_FLOOR + 1 ? "1" : "0";
    v.db.textContent = v.shownDb <= DB_FLOOR + 0.5 ? "silence" : `${v.shownDb.toFixed(0)} dBFS`;
    v.card.dataset.rms = String(rms);
    v.updates = (v.updates || 0) + 1;
    v.card.dataset.updates = String(v.updates);
    counters.levelUpdates += 1;
    root.dataset.levelUpdates = String(counters.levelUpdates);
  }

  function tick() {
    raf = null;
    const now = performance.now() / 1000;
    let pending = false;
    for (const [id, q] of meterQ) {
      let last = null;
      while (q.length && q[0][0] + offset + JITTER <= now) last = q.shift();
      if (q.length > 90) { last = q[q.length - 1]; q.length = 0; } // far behind: jump to the newest
      if (last) drawMeter(id, last[1], last[2]);
      if (q.length) pending = true;
    }
    if (pending) raf = requestAnimationFrame(tick);
  }

  function onLevels(msg) {
    if (bv) return; // the browser recorder draws its meters from the audio it encodes
    const now = performance.now() / 1000;
    const samples = msg.samples || {};
    const latest = msg.levels || {};
    for (const id in latest) {
      const list = samples[id] || [[latest[id].ts, latest[id].rms, latest[id].peak]];
      for (const s of list) {
        const off = now - s[0];
        if (offset === null || off < offset || now - offsetAt > 10) { offset = off; offsetAt = now; }
      }
      const q = meterQ.get(id) || [];
      q.push(...list);
      meterQ.set(id, q);
    }
    if (document.hidden) { // no animation frames in a hidden tab: show the newest at once
      for (const [id, q] of meterQ) if (q.length) { const l = q[q.length - 1]; q.length = 0; drawMeter(id, l[1], l[2]); }
      return;
    }
    if (raf === null) raf = requestAnimationFrame(tick);
  }

  function onCustom(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "thumb") onThumb(msg, buffers);
    else if (msg.type === "levels") onLevels(msg);
  }

  const bv = rec ? new BrowserView({ recorder: rec, model, controls, status, drawMeter, chanViews,
                                      render: () => { renderState(); } }) : null;

  const handlers = [
    ["change:channels", renderChannels], ["change:selected", renderState], ["change:paused", renderChannels],
    ["change:state", () => { renderState(); renderTranscript(); }], ["change:session_id", renderState],
    ["change:status", renderState], ["change:stale", renderStale], ["change:errors", renderErrors],
    ["change:transcript", renderTranscript], ["change:counts", () => { renderCounts(); renderCells(); }],
    ["change:alerts", renderCounts], ["change:cells", renderCells],
    ["msg:custom", onCustom],
  ];
  for (const [ev, fn] of handlers) model.on(ev, fn);
  renderState();
  renderStale();
  renderErrors();
  renderTranscript();
  renderCounts();
  model.send({ type: "hello" }); // ask Python for the latest frames so a re-rendered view is not blank

  return () => {
    for (const [ev, fn] of handlers) model.off(ev, fn);
    for (const v of chanViews.values()) if (v.url) URL.revokeObjectURL(v.url);
    if (raf !== null) cancelAnimationFrame(raf);
    if (bv) bv.destroy();
  };
}

export default { initialize, render };
