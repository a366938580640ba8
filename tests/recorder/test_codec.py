"""Codec round-trips on real rig pixels and real captured sound: encode → fragments → decode / mux."""
from __future__ import annotations

import subprocess
import sys
import time

import av
import numpy as np

from vdbnb.media.check import check_media
from vdbnb.media.decode import decode_audio, iter_video_frames
from vdbnb.media.encode import AudioEncoder, VideoEncoder
from vdbnb.media.fragmenter import Fragmenter
from vdbnb.media.mux import mux_mp4, probe_duration
from vdbnb.media.fragments import unpack
from vdbnb.recorder.devices import open_mss

from rigutil import Xterm, envelope, play, read_wav, resample, tts, xcorr_max


def grab(index: int) -> np.ndarray:
    with open_mss() as s:
        shot = s.grab(s.monitors[index])
        return np.frombuffer(shot.raw, np.uint8).reshape(shot.height, shot.width, 4).copy()


def encode_video(frames, t0, fps=2.0, cid="display:1", gop_s=60.0, fragment_s=2.0):
    h, w = frames[0].shape[:2]
    enc = VideoEncoder(w, h, fps=fps, gop_s=gop_s)
    fr = Fragmenter(cid, "video", "h264", enc.codec_info, max_s=fragment_s)
    out = []
    for i, img in enumerate(frames):
        out += fr.add(enc.encode(img, t0 + i / fps), {"window_title": f"t{i}"})
    out += fr.add(enc.flush())
    out += fr.flush()
    return [unpack(f.pack()) for f in out]


def test_video_roundtrip_real_screen(rig):
    win = Xterm("Codec Probe", bg="blue", geometry="60x15+2200+200")
    try:
        time.sleep(0.8)
        frames = [grab(2) for _ in range(9)]
    finally:
        win.close()
    t0 = time.time()
    frags = encode_video(frames, t0)
    # one GOP (a keyframe every 60 s) cut into fragments of <= 2 s: the first starts with the keyframe, the
    # others continue its GOP and say so; seq from 0 without gaps; every one passes the ingest checks
    assert [f.seq for f in frags] == list(range(len(frags))) and len(frags) == 3
    assert frags[0].gop_seq is None and frags[0].packets[0]["key"]
    for f in frags:
        assert all(not p["key"] for p in f.packets[1:])
        assert f.t1 - f.t0 <= 2.0 + 1e-6
        assert f.payload.startswith(b"\x00\x00\x00\x01") and f.meta["window_title"].startswith("t")
        check_media(f)
    assert [f.gop_seq for f in frags[1:]] == [0, 0] and not any(p["key"] for f in frags[1:] for p in f.packets)
    dec = list(iter_video_frames(frags))
    assert len(dec) == 9
    assert abs(dec[4][0] - (t0 + 2.0)) < 1e-3
    ref = frames[4][:, :, 2::-1]  # BGRA → RGB
    err = np.abs(dec[4][1].astype(int) - ref.astype(int)).mean()
    assert err < 6, f"decoded frame differs from the screen by {err:.1f}/255 on average"
    # the blue xterm is there (x 2200-1920=280.., y 200..)
    patch = dec[4][1][240:300, 300:500]
    assert patch[..., 2].mean() > 150 and patch[..., 0].mean() < 80


def test_audio_roundtrip_real_mic(rig, tmp_path):
    wav = tts(tmp_path / "s.wav", "the quick brown fox jumps over the lazy dog")
    src, rate = read_wav(wav)
    # --stall 30: the worker's "device gone" exit (2 s without a callback by default) is not what this test is
    # about, and a box at load ~10 stalled PulseAudio's delivery for 2 s once (the worker exited mid-sentence)
    p = subprocess.Popen([sys.executable, "-m", "vdbnb.recorder.audio_worker", "--stall", "30"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**__import__("os").environ,
                                                                              "PULSE_SOURCE": "virtual_mic"})
    # wait until the capture delivers, then play
    first = p.stdout.read(1920)
    assert first, p.stderr.read()
    player = play(wav, "mic_feed")
    t0 = time.time()
    enc = AudioEncoder()
    fr = Fragmenter("mic:default", "audio", "opus", enc.codec_info)
    frags = []
    n = 0
    # capture until the player is done (paplay returns once the sentence was played into the sink) and 0.5 s
    # of sound after it: a busy box can take seconds to start paplay, so a fixed window may miss the sentence
    n_done = None
    deadline = t0 + len(src) / rate + 60
    while n_done is None or n < n_done + 24000:
        assert time.time() < deadline, "paplay did not finish playing the sentence within 60 s"
        b = p.stdout.read(1920)
        assert b, p.stderr.read()
        pcm = np.frombuffer(b, np.int16)   # the worker writes s16le
        frags += fr.add(enc.push(pcm, t0 + n / 48000))
        n += len(pcm)
        if n_done is None and player.poll() is not None:
            n_done = n
    assert player.returncode == 0
    p.stdin.close()
    p.terminate()
    frags += fr.add(enc.flush()) + fr.flush()
    frags = [unpack(f.pack()) for f in frags]
    assert all(f.t1 - f.t0 <= 0.5 + 1e-6 for f in frags)
    assert [f.seq for f in frags] == list(range(len(frags)))
    pcm, ts = decode_audio(frags)
    assert abs(ts - frags[0].t0) < 1e-6
    assert abs(len(pcm) / 16000 - (frags[-1].t1 - frags[0].t0)) < 0.05
    c, _ = xcorr_max(envelope(pcm, 16000), envelope(resample(src, rate, 16000), 16000))
    assert c > 0.8, f"decoded mic audio does not match the spoken sentence (corr {c:.2f})"
    # a missing fragment is silence of the right length, not a shift
    holed = frags[:3] + frags[4:]
    pcm2, _ = decode_audio(holed)
    assert len(pcm2) == len(pcm)
    a, b = int((frags[3].t0 - ts) * 16000) + 200, int((frags[3].t1 - ts) * 16000) - 200
    assert np.abs(pcm2[a:b]).max() == 0


def test_mux_duration_gaps_and_tracks(tmp_path):
    t0 = 1_800_000_000.0
    frames = []
    for i in range(20):  # 10 s at 2 fps, a bar growing
        img = np.zeros((360, 640, 4), np.uint8)
        img[:, : 30 * (i + 1), :3] = 255
        frames.append(img)
    vfr = encode_video(frames, t0, gop_s=2.0)
    vfr = [f for f in vfr if f.seq != 2]  # a lost GOP: must freeze, not shorten
    sr = 48000
    tracks = []
    for k, freq in enumerate((440, 880)):
        enc = AudioEncoder()
        fr = Fragmenter(f"mic:{k}", "audio", "opus", enc.codec_info)
        out = []
        sig = (0.3 * np.sin(2 * np.pi * freq * np.arange(sr * 10) / sr)).astype(np.float32)
        for i in range(0, len(sig), 960):
            out += fr.add(enc.push(sig[i:i + 960], t0 + 1.0 + i / sr))  # audio starts 1 s later
        out += fr.add(enc.flush()) + fr.flush()
        tracks.append([f.pack() for f in out])
    progress = []
    out = tmp_path / "x.mp4"
    s = mux_mp4(out, vfr, tracks, progress=progress.append)
    assert progress[-1] == 1.0
    with av.open(str(out)) as c:
        assert {st.type for st in c.streams} == {"video", "audio"}
        assert c.streams.video[0].codec_context.name == "h264"
        dur = c.duration / av.time_base
    assert abs(dur - (s["end"] - s["start"])) < 0.1 and abs(dur - 11.0) < 0.1
    # the frozen gap: the frame at 5.0 s shows the last frame before the gap (bar of frame 7)
    with av.open(str(out)) as c:
        fr_ = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    times = [t for t, _ in fr_]
    assert not any(4.0 <= t < 6.0 for t in times)  # no frames invented in the gap…
    held = [img for t, img in fr_ if t < 4.0][-1]
    assert (held[100, :, 0] > 128).sum() == 30 * 8  # …the last one before it is held
    # the mixed audio has both tones
    with av.open(str(out)) as c:
        a = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    spec = np.abs(np.fft.rfft(a[sr * 3: sr * 5]))
    freqs = np.fft.rfftfreq(2 * sr, 1 / sr)
    assert spec[np.argmin(abs(freqs - 440))] > 50 * np.median(spec)
    assert spec[np.argmin(abs(freqs - 880))] > 50 * np.median(spec)
    assert np.abs(a[: sr // 2]).max() < 0.01  # silence before the audio began
    # per-channel asset: one stream each
    s2 = mux_mp4(tmp_path / "mic0.m4a.mp4", None, [tracks[0]])
    with av.open(s2["path"]) as c:
        assert [st.type for st in c.streams] == ["audio"]
    # a trimmed export
    s3 = mux_mp4(tmp_path / "t.mp4", vfr, tracks, start=t0 + 2.5, end=t0 + 8.0)
    assert abs(probe_duration(s3["path"]) - 5.5) < 0.1


def test_audio_fragments_split_at_a_clock_jump_and_all_pass_ingest_checks():
    """When the capture clock and the encoder's sample clock disagree (a loaded machine delivers a block
    late, then the next early; or a device stalls for > 5 s) the encoder re-anchors and packet times jump.
    Packets after a jump start a new fragment, so every fragment still fills its t0..t1 exactly; a fragment
    spanning the jump was rejected by ingest (BAD_MEDIA), which lost its seq."""
    enc = AudioEncoder(channels=1)
    fr = Fragmenter("mic:default", "audio", "opus", enc.codec_info, max_s=0.25)
    t0 = time.time() - 30
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(48000 * 3) / 48000)).astype(np.float32)
    frags = fr.add(enc.push(tone[:28800], t0))                        # 0.6 s
    frags += fr.add(enc.push(tone[28800:48000], t0 + 0.6 - 0.1))      # capture clock 100 ms behind
    frags += fr.add(enc.push(tone[48000:96000], t0 + 0.9 + 6.0))      # the device stalled for 6 s
    frags += fr.add(enc.flush()) + fr.flush()
    assert [f.seq for f in frags] == list(range(len(frags)))
    for f in frags:
        check_media(unpack(f.pack()))  # raises FragmentError("BAD_MEDIA", ...) for a spanning fragment
    starts = [f.t0 for f in frags]
    assert any(b < a_end for a_end, b in zip([f.t1 for f in frags], starts[1:]))  # the backward re-anchor
    assert frags[-1].t1 > t0 + 6.9  # the stall: 5 s of silence filled, the rest skipped in time


def _bars(n, size=(360, 640)):
    """Frames whose content says their index: a white bar 20*(i+1) px wide."""
    out = []
    for i in range(n):
        img = np.zeros(size + (4,), np.uint8)
        img[:, : 20 * (i + 1), :3] = 255
        out.append(img)
    return out


def _bar_index(rgb) -> int:
    return int(round((rgb[180, :, 0] > 128).sum() / 20)) - 1


def test_long_gop_clip_is_frame_exact(tmp_path):
    """A GOP of 20 s spans ten 2 s fragments (and a second run uses 6 s fragments): a clip that starts in the
    middle of it decodes from the keyframe, and its first picture is the one on screen at the clip's start —
    the pictures before it are references only (the MP4's edit list skips them), none is shown or shifted."""
    t0 = 1_800_000_000.0
    for fragment_s in (2.0, 6.0):
        vfr = encode_video(_bars(20), t0, fps=1.0, fragment_s=fragment_s)
        assert sum(1 for f in vfr if f.gop_seq is None) == 1 and max(f.t1 - f.t0 for f in vfr) <= fragment_s + 1e-6
        if fragment_s > 2:
            assert max(f.t1 - f.t0 for f in vfr) > 2.0  # a fragment longer than 2 s
        out = tmp_path / f"clip{fragment_s:g}.mp4"
        mux_mp4(out, vfr, None, start=t0 + 12.5, end=t0 + 16.0)
        with av.open(str(out)) as c:
            got = [(round(f.time, 3), _bar_index(f.to_ndarray(format="rgb24"))) for f in c.decode(video=0)]
        # at 0.0 the frame captured at 12 s (on screen from 12 to 13), then 13, 14, 15 at 0.5, 1.5, 2.5 s
        assert got == [(0.0, 12), (0.5, 13), (1.5, 14), (2.5, 15)], got
        assert abs(probe_duration(out) - 3.5) < 0.05


def test_long_gop_decoding_skips_a_broken_gop():
    """A continuation fragment whose predecessor is missing cannot be decoded on the right pictures: it and the
    rest of its GOP are skipped (the export freezes the last good picture) until the next keyframe."""
    t0 = 1_800_000_000.0
    vfr = encode_video(_bars(12), t0, fps=1.0, gop_s=8.0)   # keyframes at 0 and 8 s; fragments of 2 s
    assert [f.gop_seq for f in vfr] == [None, 0, 0, 0, None, 4]
    holed = [f for f in vfr if f.seq != 1]
    got = [(round(p - t0), _bar_index(img)) for p, img in iter_video_frames(holed)]
    assert got == [(0, 0), (1, 1), (8, 8), (9, 9), (10, 10), (11, 11)]
    # a start mid-GOP is primed from the GOP's fragments when they can be loaded
    from vdbnb.media.decode import VideoStreamDecoder
    by_seq = {f.seq: f for f in vfr}
    dec = VideoStreamDecoder(lambda a, b: [by_seq[s] for s in range(a, b + 1)])
    got = [(round(p - t0), _bar_index(img)) for p, img in dec.frames(by_seq[3])]
    assert got == [(6, 6), (7, 7)]


def test_s16_chunks_of_several_frames_encode_like_float_frames_and_fragments_close_when_full():
    """The recorder reads 16-bit PCM in chunks of two 60 ms frames (recorder/audio.py): the encoder gives the
    same packet times for it as for float32 fed one frame at a time, a fragment is handed over as soon as it
    is full (not when the next chunk arrives), and the per-frame levels of a chunk are the frames' own."""
    from vdbnb.recorder.audio import FRAME, levels

    t0 = time.time() - 10
    sig = 0.25 * np.sin(2 * np.pi * 300 * np.arange(FRAME * 20) / 48000)
    sig[FRAME * 4:FRAME * 5] *= 2.0                           # one louder frame
    s16 = np.round(sig * 32767).astype(np.int16)
    ref_enc, enc = AudioEncoder(), AudioEncoder()
    ref = [p for i in range(0, len(sig), FRAME) for p in ref_enc.push(sig[i:i + FRAME].astype(np.float32),
                                                                      t0 + i / 48000)]
    fr = Fragmenter("mic:default", "audio", "opus", enc.codec_info, max_s=0.25)
    got, frags = [], []
    for i in range(0, len(s16), 2 * FRAME):
        pk = enc.push(s16[i:i + 2 * FRAME, None], t0 + i / 48000)
        assert len(pk) == 2                                   # both frames encoded in the same push
        got += pk
        new = fr.add(pk)
        for f in new:                                         # a full fragment leaves with its last packet
            assert abs(f.t1 - (pk[-1].pts + pk[-1].dur)) < 1e-3 and f.t1 - f.t0 <= 0.25 + 1e-3
        frags += new
    assert [round(p.pts, 6) for p in got] == [round(p.pts, 6) for p in ref]
    assert len(frags) == 5 and not fr.flush()                 # 20 frames = 5 fragments of 4, none left open
    for f in frags:
        check_media(unpack(f.pack()))
    rms, peak = levels(s16)
    assert len(rms) == 20
    assert abs(rms[0] - 0.25 / np.sqrt(2)) < 2e-3 and abs(peak[0] - 0.25) < 2e-3
    assert abs(rms[4] - 0.5 / np.sqrt(2)) < 2e-3 and abs(peak[4] - 0.5) < 2e-3
