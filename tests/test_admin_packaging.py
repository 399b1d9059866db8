"""The admin UI's files ship inside the package: a non-editable install serves them."""

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


def test_every_package_directory_is_listed_in_setup_cfg():
    """setup.cfg lists packages by hand (to map static/ in): a new subpackage must be added there."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "aigateway").rglob("__init__.py")}
    assert found <= listed, f"add to setup.cfg [options] packages: {sorted(found - listed)}"
    assert "aigateway.static" in listed


@pytest.mark.timeout(300)
def test_a_non_editable_install_serves_the_admin_pages(tmp_path, monkeypatch):
    """``pip install`` (a real wheel build) of a copy of the source, run from elsewhere: the login
    page and every static file come from the installed package."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "aigateway", source / "aigateway", ignore=ignore)
    shutil.copytree(ROOT / "static", source / "static", ignore=ignore)
    site = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                          str(source)], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    installed = site / "aigateway" / "static"
    assert sorted(p.name for p in installed.iterdir()) == sorted(p.name for p in (ROOT / "static").iterdir())

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
        for name in ("api.js", "login.js", "clients.js", "style.css"):
            served = httpx.get(f"{proc.url}/static/{name}")
            assert served.status_code == 200 and served.content == (ROOT / "static" / name).read_bytes(), name
        page = httpx.get(proc.url + "/admin/clients")
        assert page.status_code == 302 and page.headers["Location"].startswith("/admin?next=")
    finally:
        proc.stop()
