import pytest
from IPython.core.interactiveshell import InteractiveShell

from vdbnb.events import Event


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    yield shell


def test_load_ext_twice_is_harmless(ip, capsys):
    ip.run_line_magic("load_ext", "vdbnb")
    magics_before = dict(ip.magics_manager.magics["line"])
    ip.run_line_magic("load_ext", "vdbnb")
    ip.run_line_magic("reload_ext", "vdbnb")
    assert "vdbnb" in ip.magics_manager.magics["line"]
    assert set(ip.magics_manager.magics["line"]) == set(magics_before)
    ip.run_line_magic("vdbnb", "help")
    assert "%vdbnb status" in capsys.readouterr().out


def test_event_html_repr(ip):
    ip.run_line_magic("load_ext", "vdbnb")
    data, _ = ip.display_formatter.format(Event(channel="transcript", text="hello <world>", is_final=True))
    assert "text/html" in data and "hello &lt;world&gt;" in data["text/html"]


def test_status_reports_unreachable_server_with_what_to_do(ip, monkeypatch, capsys):
    from vdbnb import magics
    monkeypatch.setenv("VDBNB_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("VDBNB_API_KEY", "sk-test")
    monkeypatch.setitem(magics._STATE, "conn", None)
    from IPython.utils.capture import capture_output
    ip.run_line_magic("load_ext", "vdbnb")
    with capture_output() as cap:
        ip.run_line_magic("vdbnb", "status")
    html = "".join(o.data.get("text/html", "") for o in cap.outputs)
    assert "health check failed" in html and "What to do" in html


def test_status_and_search_against_a_real_server(ip, server, monkeypatch):
    from IPython.utils.capture import capture_output

    from vdbnb import magics
    monkeypatch.setenv("VDBNB_URL", server.url)
    monkeypatch.setenv("VDBNB_API_KEY", server.api_key)
    monkeypatch.setitem(magics._STATE, "conn", None)
    ip.run_line_magic("load_ext", "vdbnb")
    with capture_output() as cap:
        ip.run_line_magic("vdbnb", "status")
    html = "".join(o.data.get("text/html", "") for o in cap.outputs)
    assert server.url in html and "capture session(s)" in html and "health check failed" not in html, html
    df = ip.run_line_magic("vdbnb", "search delivery truck")
    assert list(df.columns)[:3] == ["score", "text", "ts"]
    assert ip.user_ns["_vdbnb_search"] is not None
