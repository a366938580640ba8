// One shared screen, window or tab -> encoded packets: frames sampled at `fps`, an unchanged frame not
// encoded (a heartbeat frame every heartbeat_s), region masks blacked out in the pixels before the encoder
// sees them, a keyframe at least every gop_s (120 s, as the native recorder: a 1080p keyframe costs what
// dozens of changed frames do; fragments of <= 2 s continue the GOP), WebCodecs H.264 High (Annex B, SPS/PPS
// before every keyframe) else VP9 else VP8.
import { StreamClock } from "./clock.js";

const CODECS = {
  h264: (w, h) => `avc1.6400${w * h <= 1920 * 1088 ? "28" : w * h <= 2560 * 1600 ? "32" : "33"}`,
  vp9: () => "vp09.00.41.08",
  vp8: () => "vp8",
};

export async function pickCodec(pref, width, height, fps) {
  const order = pref ? [pref] : ["h264", "vp9", "vp8"];
  for (const name of order) {
    const config = {
      codec: CODECS[name](width, height), width, height, framerate: Math.max(1, fps),
      bitrate: Math.round(Math.min(4e6, Math.max(6e5, width * height * 0.5))), latencyMode: "realtime",
      hardwareAcceleration: "no-preference",
    };
    if (name === "h264") config.avc = { format: "annexb" };
    try {
      const s = await VideoEncoder.isConfigSupported(config);
      if (s.supported) return { name, config };
    } catch (e) { /* not this one */ }
  }
  throw new Error(`this browser cannot encode ${order.join(", ")} at ${width}×${height} (WebCodecs)`);
}

// I420 / NV12 / RGBA-family black, per plane
function blackOut(buf, layout, format, w, h, rects) {
  const fill = (plane, x0, y0, x1, y1, bpp, val) => {
    const { offset, stride } = layout[plane];
    for (let y = y0; y < y1; y++) buf.fill(val, offset + y * stride + x0 * bpp, offset + y * stride + x1 * bpp);
  };
  for (const r of rects) {
    const x0 = Math.max(0, Math.floor(r.x)), y0 = Math.max(0, Math.floor(r.y));
    const x1 = Math.min(w, Math.ceil(r.x + r.w)), y1 = Math.min(h, Math.ceil(r.y + r.h));
    if (x1 <= x0 || y1 <= y0) continue;
    if (format === "I420" || format === "I420A") {
      fill(0, x0, y0, x1, y1, 1, 16);
      fill(1, x0 >> 1, y0 >> 1, (x1 + 1) >> 1, (y1 + 1) >> 1, 1, 128);
      fill(2, x0 >> 1, y0 >> 1, (x1 + 1) >> 1, (y1 + 1) >> 1, 1, 128);
    } else if (format === "NV12") {
      fill(0, x0, y0, x1, y1, 1, 16);
      fill(1, x0 & ~1, y0 >> 1, (x1 + 1) & ~1, (y1 + 1) >> 1, 1, 128);
    } else {
      for (let y = y0; y < y1; y++) {
        const o = layout[0].offset + y * layout[0].stride;
        for (let x = x0; x < x1; x++) { buf[o + 4 * x] = 0; buf[o + 4 * x + 1] = 0; buf[o + 4 * x + 2] = 0; }
      }
    }
  }
}

function same(a, b) {
  if (!a || !b || a.byteLength !== b.byteLength) return false;
  const n = a.byteLength >> 2;
  const x = new Uint32Array(a.buffer, a.byteOffset, n), y = new Uint32Array(b.buffer, b.byteOffset, n);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return false;
  for (let i = n << 2; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class VideoCapture {
  // opts: {track, channelId, fps, gopS, heartbeatS, codec, masks, frameClock, onPackets(packets, codecName,
  //        info), onError(code, message), onFrame(), onTick(pts)}
  constructor(opts) {
    Object.assign(this, opts);
    this.clock = new StreamClock();
    this.paused = false;
    this.running = false;
    this.stash = [];
    this.stats = { frames: 0, encoded: 0, skipped: 0, bytes: 0, keyframes: 0, calibrated: false };
  }

  async start() {
    this.running = true;
    // frames wait (copied) until the frame clock is known, at most this long; then the estimate stands in
    this.calibrateUntil = performance.now() + Math.min(6000, 3500 / this.fps + 1000);
    this.reader = new MediaStreamTrackProcessor({ track: this.track }).readable.getReader();
    this.loop = this.readLoop();
  }

  async configure(w, h) {
    if (this.encoder) await this.closeEncoder();
    const { name, config } = await pickCodec(this.codec, w, h, this.fps);
    this.codecName = name;
    this.size = [w, h];
    this.ptsOf = new Map();
    this.encoder = new VideoEncoder({
      output: (chunk) => this.output(chunk),
      error: (e) => this.onError("ENCODER", `${this.channelId}: the ${name} encoder failed: ${e.message}`),
    });
    this.encoder.configure(config);
    this.lastKey = null;
    this.info = { width: w, height: h, fps: this.fps };
  }

  output(chunk) {
    const data = new Uint8Array(chunk.byteLength);
    chunk.copyTo(data);
    const pts = this.ptsOf.get(chunk.timestamp) ?? this.clock.epoch(chunk.timestamp);
    this.ptsOf.delete(chunk.timestamp);
    const key = chunk.type === "key";
    this.stats.encoded += 1;
    this.stats.bytes += data.byteLength;
    if (key) this.stats.keyframes += 1;
    this.onPackets([{ data, pts, dur: 1 / this.fps, key }], this.codecName, this.info);
  }

  calibrated() {
    const fc = this.frameClock;
    if (!this.clock.exact && fc && fc.offsetMs !== null) {
      this.clock.calibrate(fc.offsetMs);
      this.stats.calibrated = true;
    }
    return this.clock.exact || !fc || performance.now() > this.calibrateUntil;
  }

  async readLoop() {
    const interval = 1 / this.fps;
    let lastTaken = -Infinity;
    this.prev = null;
    this.encodedAt = -Infinity;
    this.lastPts = 0;
    try {
      while (this.running) {
        const { value: frame, done } = await this.reader.read();
        if (done) break;
        this.clock.observe(frame.timestamp);
        if (this.frameClock) this.frameClock.note(frame.timestamp);
        this.stats.frames += 1;
        if (this.onFrame) this.onFrame();
        const tsMs = frame.timestamp / 1000;
        // sample at fps (a capturer asked for fps may still deliver a little faster)
        if (this.paused || tsMs / 1000 - lastTaken < interval * 0.9) { frame.close(); continue; }
        lastTaken = tsMs / 1000;
        try {
          const pic = await this.copy(frame);
          if (!this.calibrated()) {
            if (this.stash.length < 16) this.stash.push(pic);
            continue;
          }
          for (const early of this.stash.splice(0)) await this.take(early);
          await this.take(pic, frame);
        } finally {
          frame.close();
        }
      }
    } catch (e) {
      if (this.running) this.onError("CHANNEL_LOST", `${this.channelId}: ${e.message}`);
    }
  }

  // The frame's pixels (for change detection and masks) and what is needed to rebuild it.
  async copy(frame) {
    const w = frame.displayWidth & ~1, h = frame.displayHeight & ~1;
    const rect = { x: 0, y: 0, width: w, height: h };
    const pic = { w, h, rect, format: frame.format, ts: frame.timestamp, buf: null, layout: null };
    if (frame.format) {
      pic.buf = new Uint8Array(frame.allocationSize({ rect }));
      pic.layout = await frame.copyTo(pic.buf, { rect });
    }
    return pic;
  }

  async take(pic, frame) {
    const pts = Math.max(this.clock.epoch(pic.ts), this.lastPts + 0.001);
    const unchanged = pic.buf && same(pic.buf, this.prev);
    if (this.onTick && this.ptsOf && this.ptsOf.size === 0) this.onTick(pts); // every packet is out: cut safely
    if (unchanged && pts - this.encodedAt < this.heartbeatS) { this.stats.skipped += 1; return; }
    if (!this.encoder || this.size[0] !== pic.w || this.size[1] !== pic.h) await this.configure(pic.w, pic.h);
    // keep the encoder's queue short: a slow machine drops frames instead of piling them up
    if (this.encoder.encodeQueueSize > 2) { this.stats.skipped += 1; return; }
    if (pic.buf) this.prev = pic.buf;
    const masks = (this.masks || []).filter((r) => !r.display || r.display === this.channelId);
    let input;
    if ((masks.length || !frame) && pic.buf) {
      const px = masks.length ? pic.buf.slice() : pic.buf;
      if (masks.length) blackOut(px, pic.layout, pic.format, pic.w, pic.h, masks);
      input = new VideoFrame(px, { format: pic.format, codedWidth: pic.w, codedHeight: pic.h, timestamp: pic.ts,
                                   layout: pic.layout });
    } else if (frame) {
      input = new VideoFrame(frame, { visibleRect: pic.rect, timestamp: pic.ts });
    } else {
      return;
    }
    const key = this.lastKey === null || pts - this.lastKey + 1 / this.fps > this.gopS + 1e-6;
    if (key) this.lastKey = pts;
    this.ptsOf.set(input.timestamp, pts);
    this.encoder.encode(input, { keyFrame: key });
    input.close();
    this.encodedAt = pts;
    this.lastPts = pts;
  }

  async closeEncoder() {
    try { await this.encoder.flush(); } catch (e) { /* closed */ }
    try { this.encoder.close(); } catch (e) { /* closed */ }
    this.encoder = null;
  }

  async stop() {
    this.running = false;
    try { await this.reader.cancel(); } catch (e) { /* ended */ }
    await this.loop;
    for (const early of this.stash.splice(0)) await this.take(early).catch(() => {});
    if (this.encoder) await this.closeEncoder();
  }
}
