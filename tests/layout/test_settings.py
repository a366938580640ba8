"""One typed settings object (vdbnb/config.py): nothing else in the package reads the environment, the README's
table is the settings', values are typed with clear errors, and settings that exist are used."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import httpx
import pytest

from vdbnb.config import Settings, SettingsError, markdown_table

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "vdbnb"
ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def env_reads(path: Path) -> list[str]:
    """``line name`` for every use of os.environ/getenv/putenv/unsetenv (as a name, an attribute or an import)
    in a Python file; strings and comments do not count."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        name = None
        if isinstance(node, ast.Attribute) and node.attr in ENV_NAMES:
            name = node.attr
        elif isinstance(node, ast.Name) and node.id in ENV_NAMES:
            name = node.id
        elif isinstance(node, ast.ImportFrom):
            name = next((a.name for a in node.names if a.name in ENV_NAMES), None)
        if name:
            hits.append(f"{node.lineno} {name}")
    return sorted(hits, key=lambda h: int(h.split()[0]))


def test_only_the_settings_module_reads_the_environment():
    files = sorted(p for p in PKG.rglob("*.py") if p != PKG / "config.py")
    assert len(files) > 50, "the scan found too few modules: is PKG the package?"
    hits = [f"{p.relative_to(ROOT)}:{h}" for p in files for h in env_reads(p)]
    assert not hits, ("the environment is read outside vdbnb/config.py: add a field to Settings (or build a "
                      "child's environment with config.child_env) instead:\n" + "\n".join(hits))


def test_the_scan_sees_every_form(tmp_path):
    probe = tmp_path / "m.py"
    probe.write_text("import os\nfrom os import getenv\na = os.environ.get('X')\nb = os.getenv('Y')\n"
                     "s = 'os.environ in a string is fine'  # os.environ in a comment too\nenv = {**os.environ}\n")
    assert env_reads(probe) == ["2 getenv", "3 environ", "4 getenv", "6 environ"]


def test_readme_table_is_the_settings():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- settings-table:begin -->\n(.*?)<!-- settings-table:end -->", readme, re.S)
    assert m, "README.md lost its settings-table markers"
    assert m.group(1) == markdown_table(), ("README.md's configuration table differs from vdbnb.config.Settings: "
                                           "regenerate it with `python -m vdbnb.config`")


def test_every_variable_named_in_the_package_is_a_setting():
    known = {n for f in Settings.__dataclass_fields__.values() for n in (f.metadata["env"], *f.metadata["also"])}
    named = set()
    for p in PKG.rglob("*.py"):
        named |= set(re.findall(r"\b(VDBNB_[A-Z0-9_]+|VIDEO_DB_[A-Z0-9_]+)\b", p.read_text()))
    assert named - known == set(), f"variables mentioned in vdbnb/ that no setting reads: {sorted(named - known)}"


def test_values_are_typed_and_aliases_and_overrides_apply(tmp_path):
    s = Settings.from_env({"VDBNB_PORT": "9001", "VDBNB_AI": "off", "VDBNB_OCR_INT8": "0", "VDBNB_OCR_THREADS": "3",
                           "VDBNB_RECORDER_GRACE_S": "2.5", "VIDEO_DB_API": "http://elsewhere:1",
                           "VDBNB_DATA_DIR": str(tmp_path / "d"), "VDBNB_STT_MODEL": "", "VDBNB_SPOOL_DIR": "/x/s"})
    assert (s.port, s.ai_enabled, s.ocr_int8, s.ocr_threads, s.recorder_grace_s) == (9001, False, False, 3, 2.5)
    assert s.url == "http://elsewhere:1" and s.data_dir == (tmp_path / "d").resolve()
    assert s.stt_model == "tiny.en"          # an empty variable is unset
    assert s.spool_root == Path("/x/s")
    both = Settings.from_env({"VDBNB_URL": "http://a:1", "VIDEO_DB_API": "http://b:2"})
    assert both.url == "http://a:1"          # VDBNB_URL wins over VideoDB's name
    o = Settings.from_env({"VDBNB_PORT": "9001", "VDBNB_HOST": "127.0.0.2"}, port=7, host=None)
    assert (o.port, o.host) == (7, "127.0.0.2")  # an option given wins, one not given (None) does not
    d = Settings.from_env({})
    assert (d.port, d.host, d.ai_enabled, d.max_body_bytes) == (8765, "127.0.0.1", True, 1024 * 1024)
    with pytest.raises(TypeError, match="unknown settings: nope"):
        Settings.from_env({}, nope=1)


@pytest.mark.parametrize("var,value", [("VDBNB_PORT", "eighty"), ("VDBNB_AI", "maybe"),
                                       ("VDBNB_RECORDER_GRACE_S", "8s")])
def test_a_bad_value_names_the_variable_and_what_to_do(var, value):
    with pytest.raises(SettingsError) as e:
        Settings.from_env({var: value})
    assert var in str(e.value) and repr(value) in str(e.value) and "fix or unset it" in str(e.value)


def test_cli_reports_a_bad_setting_instead_of_a_traceback(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "vdbnb", "info", "--json", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "VDBNB_PORT": "x",
                                                             "PYTHONPATH": str(ROOT)}, timeout=60)
    assert r.returncode == 2 and "VDBNB_PORT='x'" in r.stderr and "Traceback" not in r.stderr


def test_max_body_bytes_is_the_servers_json_limit(server_factory):
    srv = server_factory(env={"VDBNB_MAX_BODY_BYTES": "2048", "VDBNB_AI": "0"}).start()
    url = srv.url + "/collection/default/capture/session"
    small = {"end_user_id": "u", "metadata": {"pad": "x" * 1000}}
    big = {"end_user_id": "u", "metadata": {"pad": "x" * 4000}}
    assert len(json.dumps(small)) < 2048 < len(json.dumps(big))
    r = httpx.post(url, json=small, headers=srv.headers(), timeout=10)
    assert r.status_code == 200, r.text
    r = httpx.post(url, json=big, headers=srv.headers(), timeout=10)
    assert r.status_code == 413 and "2048-byte limit" in r.json()["message"]
