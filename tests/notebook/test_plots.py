import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from vdbnb.frames import events_frame  # noqa: E402
from vdbnb.plots import timeline  # noqa: E402

from .test_frames import T0, make_events  # noqa: E402


def test_timeline_lanes_and_artists(tmp_path):
    df = events_frame(make_events(), T0)
    t = np.arange(0, 6, 0.05)
    levels = pd.DataFrame({"channel_id": "mic:default", "ts": T0 + t, "rms": np.abs(np.sin(t)) * 0.1})
    ax = timeline(df, levels=levels, title="session")
    labels = [tl.get_text() for tl in ax.get_yticklabels()]
    assert labels == ["alerts", "screen", "mic"]  # top to bottom: mic, screen, alerts
    assert len(ax.collections) >= 3  # level envelope + speech bar + visual index span
    assert any(a.get_text() == "terminal_open" for a in ax.texts)
    lo, hi = ax.get_xlim()
    assert lo <= 1.0 and hi >= 5.0
    ax.figure.savefig(tmp_path / "timeline.png")
    assert (tmp_path / "timeline.png").stat().st_size > 5000


def test_timeline_empty_frame_and_given_axes():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    out = timeline(events_frame([]), ax=ax)
    assert out is ax
    plt.close(fig)
