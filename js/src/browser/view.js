// What a panel view shows of the browser recorder: live previews straight from the shared streams (a <video>
// per display card), meters from the audio the page encodes, Share… / + Screen buttons, the link's state.
// panel.js calls decorate() after it (re)builds the channel cards; the recorder notifies the view.

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export class BrowserView {
  constructor({ recorder, model, controls, status, drawMeter, chanViews, render }) {
    Object.assign(this, { recorder, model, drawMeter, chanViews, render });
    this.shareBtn = el("button", "vdbnb-btn vdbnb-share", "Share…");
    this.shareBtn.title = "pick what to share (the browser asks); the panel previews it; nothing is recorded until Start";
    this.addBtn = el("button", "vdbnb-btn vdbnb-addscreen", "+ Screen");
    this.addBtn.title = "share one more screen, window or tab (before Start)";
    this.linkInfo = el("span", "vdbnb-link");
    controls.prepend(this.shareBtn);
    controls.insertBefore(this.addBtn, this.shareBtn.nextSibling);
    controls.append(this.linkInfo);
    this.status = status;
    this.shareBtn.addEventListener("click", () => this.recorder.share(this.model.get("selected")).catch(() => {}));
    this.addBtn.addEventListener("click", () => this.recorder.share(["display:0"], { addScreen: true }).catch(() => {}));
    this.off = (what, data) => this.on(what, data);
    recorder.listeners.add(this.off);
    this.renderButtons();
  }

  on(what, data) {
    if (what === "level") this.drawMeter(data.channel_id, data.rms, data.peak);
    else if (what === "shared") { this.decorate(); this.renderButtons(); }
    else if (what === "state") {
      const root = this.linkInfo.closest(".vdbnb-panel");
      if (root) root.dataset.recorder = data.state;
      this.renderButtons();
      this.render();
    }
    else if (what === "link") this.renderLink(data);
  }

  busy() {
    return this.recorder.busy();
  }

  renderButtons(startBtn, stopBtn) {
    const r = this.recorder;
    this.shareBtn.disabled = r.busy() || r.shared.displays.length > 0;
    this.addBtn.disabled = r.busy() || r.shared.displays.length === 0;
    this.linkInfo.dataset.state = r.state;
    if (startBtn) startBtn.disabled = r.busy();
    if (stopBtn) stopBtn.disabled = !(r.state === "recording" || r.state === "starting");
  }

  renderLink(l) {
    const parts = [];
    if (l.route) parts.push(l.route === "jupyter" ? "via Jupyter" : "direct");
    if (l.connected === false) parts.push(`link down ${Math.round(l.down_s || 0)} s`);
    if (l.unacked) parts.push(`${l.unacked} waiting in the browser`);
    this.linkInfo.textContent = parts.length ? "· " + parts.join(" · ") : "";
    this.linkInfo.dataset.unacked = String(l.unacked || 0);
    this.linkInfo.dataset.connected = String(!!l.connected);
  }

  // A live <video> of each shared display in its card (instead of kernel-made JPEG thumbnails).
  decorate() {
    const shared = this.recorder.shared;
    for (const [id, v] of this.chanViews) {
      if (!v.frame) continue;
      const d = shared.displays.find((x) => x.channel_id === id);
      let video = v.frame.querySelector("video");
      if (!d) {
        if (video) video.remove();
        if (v.placeholder) {
          v.placeholder.style.display = "";
          v.placeholder.textContent = this.recorder.busy() ? "ended" : "press Share… or Start: the browser asks";
        }
        continue;
      }
      if (!video) {
        video = el("video");
        video.muted = true;
        video.autoplay = true;
        video.playsInline = true;
        v.frame.append(video);
        video.addEventListener("resize", () => {
          if (v.meta) v.meta.textContent = `${video.videoWidth}×${video.videoHeight} · live from the browser`;
        });
      }
      if (video.srcObject !== d.stream) {
        video.srcObject = d.stream;
        video.play().catch(() => {});
      }
      if (v.img) v.img.style.display = "none";
      if (v.placeholder) v.placeholder.style.display = "none";
      v.card.dataset.shared = "1";
    }
  }

  destroy() {
    this.recorder.listeners.delete(this.off);
  }
}
