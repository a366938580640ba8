"""The one listener registry every panel source uses."""
from vdbnb.events import Event
from vdbnb.widgets.sources import IterableEventSource, Listeners


def test_emit_survives_a_failing_listener_and_on_empty_runs_once(caplog):
    emptied = []
    reg = Listeners(on_empty=lambda: emptied.append(True))
    got = []

    def bad(*a):
        raise RuntimeError("listener bug")
    off_bad, off_good = reg.add(bad), reg.add(lambda *a: got.append(a))
    reg.emit("thumbnail", {"channel_id": "display:1"})
    assert got == [("thumbnail", {"channel_id": "display:1"})]
    assert "listener bug" in caplog.text
    off_bad()
    off_bad()  # twice is harmless
    assert emptied == [] and len(reg) == 1
    off_good()
    assert emptied == [True] and len(reg) == 0
    reg.emit("thumbnail", {})
    assert len(got) == 1


def test_iterable_source_delivers_to_every_subscriber_despite_a_bad_one():
    evs = [Event(event="transcript", channel="transcript", rtstream_id=f"rts-{i}", data={"text": str(i)})
           for i in range(3)]
    src = IterableEventSource(iter(evs))
    seen = []
    src.subscribe(seen.append)  # the first subscriber starts the drain
    src.subscribe(lambda e: 1 / 0)
    assert src.done.wait(5)
    assert [e.rtstream_id for e in seen] == ["rts-0", "rts-1", "rts-2"] and src.error is None
