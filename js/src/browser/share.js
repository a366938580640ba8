import { FrameClock } from "./frameclock.js";

// What the user shares, asked of the browser (its own picker and permission prompts). One display:N channel
// per shared screen, window or tab (in the order shared), mic:default for the microphone, and
// system_audio:default for the audio a shared tab or screen carries where the browser offers it.

const SURFACE = { monitor: "Screen", window: "Window", browser: "Tab" };

export class Shared {
  constructor() {
    this.displays = [];      // {channel_id, stream, track, name}
    this.mic = null;         // {channel_id, stream, track, name}
    this.system = null;      // {channel_id, track, name}
    this.onEnded = null;     // (channel_id) => void
  }

  any() {
    return this.displays.length > 0 || this.mic !== null;
  }

  channels() {
    const out = this.displays.map((d) => ({ channel_id: d.channel_id, type: "video", name: d.name }));
    if (this.mic) out.push({ channel_id: this.mic.channel_id, type: "audio", name: this.mic.name });
    if (this.system) out.push({ channel_id: this.system.channel_id, type: "audio", name: this.system.name });
    return out;
  }

  display(channelId) {
    return this.displays.find((x) => x.channel_id === channelId) || null;
  }

  track(channelId) {
    const d = this.displays.find((x) => x.channel_id === channelId);
    if (d) return d.track;
    if (this.mic && this.mic.channel_id === channelId) return this.mic.track;
    if (this.system && this.system.channel_id === channelId) return this.system.track;
    return null;
  }

  // getDisplayMedia must run inside the click that asked for it (a browser shares only on a user gesture).
  async addDisplay({ fps, withAudio }) {
    const stream = await navigator.mediaDevices.getDisplayMedia({
      video: { frameRate: { ideal: Math.max(1, fps), max: Math.max(1, fps) } },
      audio: withAudio && !this.system ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : false,
      systemAudio: withAudio ? "include" : "exclude",
      surfaceSwitching: "exclude",
    });
    const track = stream.getVideoTracks()[0];
    const kind = SURFACE[(track.getSettings() || {}).displaySurface] || "Screen";
    const n = this.displays.length + 1;
    const d = { channel_id: `display:${n}`, stream, track, name: `${kind} ${n} (${track.label || "shared"})`,
                frameClock: new FrameClock(stream) };
    this.displays.push(d);
    track.addEventListener("ended", () => this.onEnded && this.onEnded(d.channel_id));
    const audio = stream.getAudioTracks()[0];
    if (audio && !this.system) {
      this.system = { channel_id: "system_audio:default", track: audio, name: `${kind} ${n} audio` };
      audio.addEventListener("ended", () => this.onEnded && this.onEnded("system_audio:default"));
    }
    return d;
  }

  async addMic() {
    if (this.mic) return this.mic;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
      video: false,
    });
    const track = stream.getAudioTracks()[0];
    this.mic = { channel_id: "mic:default", stream, track, name: `Microphone (${track.label || "default"})` };
    track.addEventListener("ended", () => this.onEnded && this.onEnded("mic:default"));
    return this.mic;
  }

  live(channelId) {
    const t = this.track(channelId);
    return !!t && t.readyState === "live";
  }

  // Release everything (the browser's "sharing" indicators go away).
  stopAll() {
    for (const d of this.displays) {
      d.frameClock.stop();
      d.stream.getTracks().forEach((t) => t.stop());
    }
    if (this.mic) this.mic.stream.getTracks().forEach((t) => t.stop());
    this.displays = [];
    this.mic = null;
    this.system = null;
  }
}

export function shareError(e) {
  if (e && (e.name === "NotAllowedError" || e.name === "SecurityError")) {
    return { code: "SHARE_DENIED", message: `the browser did not share: ${e.message}` };
  }
  if (e && e.name === "NotFoundError") return { code: "AUDIO_DEVICE", message: `no such device: ${e.message}` };
  if (e && e.name === "InvalidStateError") {
    return { code: "BROWSER_NOT_STARTED", message: "the browser shares a screen only after a click in the page: "
      + "press ● Start (or Share…) in the panel" };
  }
  return { code: "SHARE", message: `sharing failed: ${e && e.message}` };
}
