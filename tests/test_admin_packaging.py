"""The admin UI's files ship inside the package (``aigateway/static`` served at /static/,
``aigateway/templates`` rendered): a non-editable install serves them, and never a template's source."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest
from conftest import start_process

ROOT = Path(__file__).resolve().parent.parent


PACKAGE = ROOT / "aigateway"


def test_setup_cfg_ships_every_admin_file():
    """setup.cfg finds the packages and ships the UI's files by pattern: every file of static/ and
    templates/ matches one of the patterns (a new kind of file must be added there)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "package_dir" not in cfg["options"]
    patterns = [p.strip() for p in cfg["options.package_data"]["aigateway"].split(",")]
    for path in [*(PACKAGE / "static").iterdir(), *(PACKAGE / "templates").iterdir()]:
        assert any(path.relative_to(PACKAGE).match(p) for p in patterns), f"not shipped: {path}"


@pytest.mark.timeout(300)
def test_a_non_editable_install_serves_the_admin_pages(tmp_path, monkeypatch):
    """``pip install`` (a real wheel build) of a copy of the source, run from elsewhere: the login
    page and every static file come from the installed package."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(PACKAGE, source / "aigateway", ignore=ignore)
    site = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                          str(source)], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    installed = site / "aigateway" / "static"
    for folder in ("static", "templates"):
        assert (sorted(p.name for p in (site / "aigateway" / folder).iterdir())
                == sorted(p.name for p in (PACKAGE / folder).iterdir())), folder

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(site))  # the installed copy, not the checkout
    where = subprocess.run([sys.executable, "-c", "import aigateway.app as a; print(a.STATIC_DIR)"],
                           cwd=run_dir, capture_output=True, text=True, timeout=30)
    assert Path(where.stdout.strip()) == installed, where.stderr
    proc = start_process(["run", "--config", str(run_dir / "config.yaml"), "--port", "0", "--host", "127.0.0.1"],
                         cwd=str(run_dir))
    try:
        login = httpx.get(proc.url + "/admin")
        assert login.status_code == 200 and "Log in" in login.text
        assert "default-src 'self'" in login.headers["Content-Security-Policy"]
        for path in (PACKAGE / "static").iterdir():
            served = httpx.get(f"{proc.url}/static/{path.name}")
            assert served.status_code == 200 and served.content == path.read_bytes(), path.name
        for path in (PACKAGE / "templates").iterdir():  # rendered into pages, never sent as source
            assert httpx.get(f"{proc.url}/static/{path.name}").status_code == 404, path.name
            assert httpx.get(f"{proc.url}/static/../templates/{path.name}").status_code == 404, path.name
        page = httpx.get(proc.url + "/admin/clients")
        assert page.status_code == 302 and page.headers["Location"].startswith("/admin?next=")
    finally:
        proc.stop()
