// The exact clock of a shared display's frames. Chromium stamps a VideoFrame from a MediaStreamTrackProcessor
// on the system's monotonic clock, not on the page's performance clock (AudioData is on the latter). The
// difference is a constant, and requestVideoFrameCallback reveals it: for a <video> showing the same stream it
// gives each frame's captureTime on the performance clock and its mediaTime (the frame's timestamp minus the
// element's first frame's). The inter-frame intervals of a screen capture jitter at the microsecond level, so
// the shift that lines mediaTime up with the processor's timestamps is unique: 3 matching frames fix it.
// Until then (or in a hidden tab, where no frame is presented) StreamClock's estimate stands in.
const MATCH_US = 60;
const NEED = 3;

export class FrameClock {
  constructor(stream) {
    this.ts = [];             // timestamps (µs) the processor delivered
    this.samples = [];        // [captureTime ms, mediaTime s] from requestVideoFrameCallback
    this.offsetMs = null;     // performance.now() = ts / 1000 - offsetMs
    this.ready = new Promise((r) => { this.resolve = r; });
    const v = document.createElement("video");
    v.muted = true;
    v.playsInline = true;
    v.setAttribute("aria-hidden", "true");
    v.style.cssText = "position:fixed;right:0;bottom:0;width:4px;height:4px;opacity:0.01;pointer-events:none;";
    v.srcObject = stream;
    document.body.append(v);
    this.video = v;
    const cb = (_now, md) => {
      if (md.captureTime !== undefined && md.mediaTime !== undefined) this.samples.push([md.captureTime, md.mediaTime]);
      if (this.samples.length > 60) this.samples.shift();
      this.solve();
      if (this.offsetMs === null && this.video) v.requestVideoFrameCallback(cb);
    };
    if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(cb);
    v.play().catch(() => {});
  }

  note(tsUs) {
    if (this.offsetMs !== null) return;
    this.ts.push(tsUs);
    if (this.ts.length > 240) this.ts.shift();
  }

  solve() {
    if (this.offsetMs !== null || this.samples.length < NEED || this.ts.length < NEED) return;
    const ts = this.ts;
    const has = (x) => {
      let lo = 0, hi = ts.length - 1;           // ts is increasing: binary search
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (Math.abs(ts[mid] - x) <= MATCH_US) return ts[mid];
        if (ts[mid] < x) lo = mid + 1; else hi = mid - 1;
      }
      return null;
    };
    let best = null, bestN = 0, second = 0;
    for (const t of ts) {
      for (const [, mt] of this.samples) {
        const shift = t - mt * 1e6;
        const matched = this.samples.filter(([, m]) => has(shift + m * 1e6) !== null);
        if (matched.length > bestN) { second = bestN; bestN = matched.length; best = { shift, matched }; }
        else if (matched.length === bestN && best && Math.abs(shift - best.shift) > MATCH_US) second = bestN;
      }
    }
    if (!best || bestN < NEED || second === bestN) return;
    const offs = best.matched.map(([ct, m]) => has(best.shift + m * 1e6) / 1000 - ct);
    this.offsetMs = offs.reduce((a, b) => a + b, 0) / offs.length;
    this.resolve(this.offsetMs);
    this.stop();
  }

  stop() {
    if (this.video) {
      this.video.srcObject = null;
      this.video.remove();
      this.video = null;
    }
    this.resolve(this.offsetMs);
  }
}
