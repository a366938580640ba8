"""What recording the kernel as a channel costs a cell: the same cells in one real kernel, with the kernel channel
recording into a real server and without, interleaved in blocks so both see the same box.

    python bench/bench_kernel_hook.py [--cells 200] [--blocks 6]

Two figures per kind of cell:
- round trip: execute_request sent → kernel idle, as a front end sees it (median over the cells);
- in-kernel hook time: what the pre/post_run_cell hooks and the output taps add on the kernel's main thread,
  measured inside the kernel (perf_counter around the hooks), median and p99.
Goal (issue 14): cells are not slowed down noticeably — the hooks cost well under 1 ms a cell, and the round
trip with the channel on is within noise of the round trip with it off.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testkit.server import ServerProc  # noqa: E402

CELLS = {
    "assignment": "x = 1",
    "print + result": "print('row', 42)\n42",
    "dataframe": "import pandas as pd\ndf = pd.DataFrame({'a': range(50), 'b': range(50)})\ndf",
}

SETUP = """
import time, vdbnb
from vdbnb.capture import kernel as _k
conn = vdbnb.connect()
client = vdbnb.CaptureClient.sync(conn.generate_client_token(600), base_url=conn.base_url)
_hook_s = []
def _timed(fn):
    def w(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            _hook_s.append(time.perf_counter() - t)
    return w
def channel_on():
    global cap
    cap = conn.create_capture_session(end_user_id="bench")
    client.start_session(cap.id, [client.list_channels().kernels.default])
    rec = client.client.kernel_recorder
    ip = get_ipython()
    for name, fn in (("pre_run_cell", rec._pre), ("post_run_cell", rec._post)):   # time what the hooks cost
        ip.events.unregister(name, fn)
    rec._pre, rec._post = _timed(rec._pre), _timed(rec._post)
    ip.events.register("pre_run_cell", rec._pre)
    ip.events.register("post_run_cell", rec._post)
def channel_off():
    return client.stop_session(drain_timeout=60)["kernel"]
"""


def run(kc, code: str) -> float:
    t = time.perf_counter()
    kc.execute_interactive(code, timeout=120, output_hook=lambda m: None)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=200, help="cells of each kind per mode")
    ap.add_argument("--blocks", type=int, default=6, help="alternating on/off blocks")
    args = ap.parse_args()
    from jupyter_client.manager import start_new_kernel

    with tempfile.TemporaryDirectory(prefix="bench-kernel-") as tmp:
        srv = ServerProc(Path(tmp) / "data").start()
        env = {**os.environ, "VDBNB_URL": srv.url, "VDBNB_API_KEY": srv.api_key,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        km, kc = start_new_kernel(kernel_name="python3", env=env)
        try:
            run(kc, SETUP)
            for code in CELLS.values():
                run(kc, code)                                   # warm imports and formatters
            times = {(mode, kind): [] for mode in ("off", "on") for kind in CELLS}
            per_block = max(1, args.cells // args.blocks)
            reports = []
            for b in range(args.blocks):
                for mode in (("off", "on") if b % 2 == 0 else ("on", "off")):
                    if mode == "on":
                        run(kc, "channel_on()")
                    for _ in range(per_block):
                        for kind, code in CELLS.items():
                            times[(mode, kind)].append(run(kc, code))
                    if mode == "on":
                        out = []
                        kc.execute_interactive("print(channel_off())", timeout=120,
                                               output_hook=lambda m: out.append(m["content"].get("text", "")))
                        reports.append("".join(out).strip())
            hooks = []
            kc.execute_interactive("print(' '.join(f'{x:.9f}' for x in _hook_s))", timeout=60,
                                   output_hook=lambda m: hooks.extend(m["content"].get("text", "").split()))
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            srv.stop()
    hook = sorted(float(x) for x in hooks)
    print(f"cells per kind and mode: {per_block * args.blocks}, blocks: {args.blocks}")
    print(f"{'cell':16} {'off median ms':>14} {'on median ms':>13} {'on/off':>7}")
    for kind in CELLS:
        off = statistics.median(times[("off", kind)]) * 1000
        on = statistics.median(times[("on", kind)]) * 1000
        print(f"{kind:16} {off:14.2f} {on:13.2f} {on / off:7.3f}")
    if hook:
        p99 = hook[min(len(hook) - 1, int(0.99 * len(hook)))] * 1e6
        print(f"hook calls: {len(hook)}; per call median {statistics.median(hook) * 1e6:.0f} µs, p99 {p99:.0f} µs "
              f"(two calls a cell: ~{statistics.median(hook) * 2e6:.0f} µs a cell; goal: well under 1 ms)")
    print("channel reports:", *reports[-1:], sep="\n  ")


if __name__ == "__main__":
    main()
