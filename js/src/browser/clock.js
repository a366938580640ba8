// Media timestamps -> epoch seconds on the recorder's one clock (performance.timeOrigin + performance.now()).
//
// Chromium stamps what a MediaStreamTrackProcessor delivers on two different clocks (measured on Debian
// Chromium 156): AudioData on the page's performance clock, VideoFrame on the system's monotonic clock. A
// StreamClock finds out which at the first sample (more than 10 s away from performance.now() = another
// clock) and, for another clock, learns its offset as the smallest (arrival - timestamp) seen: that is the
// clock difference plus the smallest delivery delay, a few milliseconds late at most.
const FOREIGN_MS = 10000;

export class StreamClock {
  constructor() {
    this.foreign = null;
    this.offset = 0;
    this.exact = false;
  }

  // The offset measured (frameclock.js): performance.now() = ts / 1000 - offsetMs.
  calibrate(offsetMs) {
    this.foreign = true;
    this.offset = -offsetMs;
    this.exact = true;
  }

  // Call when a sample arrives (tsUs: its timestamp in microseconds).
  observe(tsUs) {
    const now = performance.now();
    const ms = tsUs / 1000;
    if (this.foreign === null) {
      this.foreign = Math.abs(now - ms) > FOREIGN_MS;
      this.offset = this.foreign ? now - ms : 0;
    } else if (this.foreign && !this.exact && now - ms < this.offset) {
      this.offset = now - ms;
    }
  }

  // Epoch seconds of a timestamp (microseconds) on this stream's clock.
  epoch(tsUs) {
    return (performance.timeOrigin + tsUs / 1000 + this.offset) / 1000;
  }
}

export function nowEpoch() {
  return (performance.timeOrigin + performance.now()) / 1000;
}
