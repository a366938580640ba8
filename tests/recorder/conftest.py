"""Fixtures for recorder tests (helpers live in rigutil.py)."""
import pytest


@pytest.fixture
def spool_dir(tmp_path):
    d = tmp_path / "spool"
    d.mkdir()
    return d


@pytest.fixture(autouse=True)
def _rig_env(request):
    # every recorder test needs the rig's DISPLAY/PULSE_SERVER in os.environ (the recorder inherits them)
    if "rig" not in request.fixturenames:
        request.getfixturevalue("rig")
    yield
