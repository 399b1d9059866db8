"""The README's reference tables and its layout are copies of facts that live in the code: they are
checked against it here, so they cannot drift. A failure prints the rows the README should have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from aigateway.config import PROVIDER_FIELDS, SETTINGS, Setting
from aigateway.limits import LIMITS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The text under a ``#`` heading, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}$", README, re.M)
    assert match, f"no section {title!r} in README.md"
    rest = README[match.end():]
    end = re.search(rf"^#{{1,{len(match.group(1))}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


def table_rows(text: str) -> list[str]:
    """The body rows of the first Markdown table in ``text``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start + 2:end]


def cell(value: object) -> str:
    """A default as the README shows it: YAML's spelling, in code."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`" if value != "" else '`""`'


def setting_row(s: Setting) -> str:
    return f"| `{s.name}` | {cell(s.default)} | {s.help} |"


def check(actual: list[str], expected: list[str], where: str) -> None:
    assert actual == expected, f"README {where} should read:\n" + "\n".join(expected)


def test_configuration_reference_is_the_settings_table() -> None:
    check(table_rows(section("Configuration reference")), [setting_row(s) for s in SETTINGS],
          "'Configuration reference' table")


def test_provider_fields_table_is_the_provider_settings() -> None:
    check(table_rows(section("Providers")), [setting_row(s) for s in PROVIDER_FIELDS], "'Providers' table")


def test_limits_table_is_the_limits_table() -> None:
    expected = [f"| `{s.flag}` | `{s.config}` | {s.help} |" for s in LIMITS]
    check(table_rows(section("Limits and quotas")), expected, "'Limits and quotas' table")


def test_layout_lists_every_module_and_folder() -> None:
    """Every file the package is made of (git's view, so nothing generated) is named in the Layout
    section (packages by their folder), and every module named there exists."""
    layout = section("Layout")
    tracked = subprocess.run(["git", "ls-files", "aigateway"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    modules = {Path(p) for p in tracked if p.endswith(".py") and not p.endswith("/__init__.py")}
    folders = {p.parent for p in modules} | {Path(p).parent for p in tracked}
    named = set(re.findall(r"[\w./-]+", layout))
    missing = [str(m) for m in sorted(modules) if m.name not in named and str(m) not in named]
    assert not missing, f"README Layout does not name: {missing}"
    missing_folders = [str(f) for f in sorted(folders) if f"{f.name}/" not in named]
    assert not missing_folders, f"README Layout does not name the folders: {missing_folders}"
    package = layout[:layout.index("\ntests/")]  # the lines about aigateway/
    for name in {n for n in re.findall(r"[\w./-]+", package) if n.endswith(".py")}:
        assert any(Path(t).name == name for t in tracked), f"README Layout names {name}, which does not exist"


def test_code_cites_public_documents_only() -> None:
    """The code cites the providers' public documentation, never notes a reader of the repository
    does not have (the team's protocol digests)."""
    tracked = subprocess.run(["git", "ls-files", "aigateway", "tests", "contrib", ".ci"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    cited = [f"{p}:{n}" for p in tracked if (ROOT / p).is_file() and p != "tests/test_readme.py"
             for n, line in enumerate((ROOT / p).read_text(errors="replace").splitlines(), 1)
             if re.search(r"protocols(-2)?\.md|stack-notes|§\d", line)]
    assert not cited, cited
