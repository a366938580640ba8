// Fragments as docs/ingest.md defines them (the native recorder's vdbnb/media/fragmenter.py, same rules):
// video = <= maxS (2 s) of one GOP — the fragment that opens a GOP starts with its keyframe, the ones that
// continue it name that fragment in gop_seq; audio = one continuous run <= maxS; seq from 0 per channel
// without gaps. One fragment is ONE binary message: 4-byte big-endian header length, JSON header, the
// packets' bytes concatenated.
const enc = new TextEncoder();
const r4 = (x) => Math.round(x * 10000) / 10000;

export function header(frag) {
  const h = { channel_id: frag.channel_id, seq: frag.seq, kind: frag.kind, codec: frag.codec, t0: frag.t0,
              t1: frag.t1, packets: frag.packets };
  if (Object.keys(frag.codec_info).length) h.codec_info = frag.codec_info;
  if (Object.keys(frag.meta).length) h.meta = frag.meta;
  if (frag.gop_seq !== null && frag.gop_seq !== undefined) h.gop_seq = frag.gop_seq;
  return h;
}

export function pack(frag) {
  const head = enc.encode(JSON.stringify(header(frag)));
  const size = frag.parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(4 + head.byteLength + size);
  new DataView(out.buffer).setUint32(0, head.byteLength);
  out.set(head, 4);
  let off = 4 + head.byteLength;
  for (const p of frag.parts) { out.set(p, off); off += p.byteLength; }
  return out;
}

// Packets are {data: Uint8Array, pts: epoch s, dur: s, key: bool}.
export class Fragmenter {
  constructor(channelId, kind, codec, codecInfo, { startSeq = 0, maxS } = {}) {
    Object.assign(this, { channelId, kind, codec, codecInfo, seq: startSeq });
    this.maxS = maxS || (kind === "video" ? 2.0 : 0.5);
    this.pk = [];
    this.meta = {};
    this.nCut = 0;
    this.gop = null;  // video: seq of the fragment holding the open GOP's keyframe
  }

  add(packets, meta) {
    const out = [];
    for (const p of packets) {
      if (this.pk.length) {
        const first = this.pk[0], last = this.pk[this.pk.length - 1];
        const over = (p.pts + p.dur) - first.pts > this.maxS + 1e-6;
        if (this.kind === "video" && (p.key || over)) out.push(this.cut());
        else if (this.kind === "audio" && (over || Math.abs(p.pts - (last.pts + last.dur)) > p.dur / 2)) {
          out.push(this.cut()); // an audio fragment is one continuous run (check_media)
        }
      }
      if (this.kind === "video" && !this.pk.length) {
        if (p.key) this.gop = this.seq;
        else if (this.gop === null) continue; // a GOP starts with a keyframe
      }
      this.pk.push(p);
    }
    if (meta) Object.assign(this.meta, meta);
    return out;
  }

  // Video with skipped (unchanged) frames: close the open fragment once it spans maxS, t1 = now (unchanged
  // until then); the GOP stays open and the next change continues it.
  tick(now) {
    if (this.pk.length && now - this.pk[0].pts >= this.maxS - 1e-6) return [this.cut(now)];
    return [];
  }

  flush() {
    return this.pk.length ? [this.cut()] : [];
  }

  // The next packet opens a new GOP (a resize, a new encoder): nothing may continue the old one.
  endGop() {
    const out = this.flush();
    this.gop = null;
    return out;
  }

  cut(t1) {
    const pk = this.pk;
    this.pk = [];
    const t0 = pk[0].pts;
    if (t1 === undefined) {
      t1 = Math.max(...pk.map((p) => p.pts + p.dur));
      if (this.kind === "video") t1 = Math.min(t1, pk[pk.length - 1].pts + this.maxS);
    }
    t1 = Math.max(t1, t0);
    let packets;
    if (this.kind === "audio") {
      // Opus packets of one duration evenly fill t0..t1: their sizes say everything (docs/ingest.md)
      const step = (t1 - t0) / pk.length;
      const even = pk.every((p, i) => Math.abs(p.pts - (t0 + i * step)) < 5e-4);
      packets = even ? pk.map((p) => p.data.byteLength) : pk.map((p) => ({ pts: r4(p.pts), size: p.data.byteLength }));
    } else {
      packets = pk.map((p) => ({ pts: r4(p.pts), dur: r4(p.dur), size: p.data.byteLength, key: p.key }));
    }
    const withInfo = this.kind === "video" || this.nCut % 40 === 0;
    this.nCut += 1;
    const frag = {
      channel_id: this.channelId, seq: this.seq, kind: this.kind, codec: this.codec, t0: r4(t0), t1: r4(t1),
      packets, codec_info: withInfo ? { ...this.codecInfo } : {}, meta: { ...this.meta },
      gop_seq: this.kind === "video" && this.gop !== this.seq ? this.gop : null, parts: pk.map((p) => p.data),
    };
    this.meta = {};
    this.seq += 1;
    return frag;
  }
}
