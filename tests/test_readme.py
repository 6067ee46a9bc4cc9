"""The settings table is the one place settings are documented (docs/operations.md): it must match the code. The
README stays a five-minute read that links to the rest."""

from __future__ import annotations

import re
from pathlib import Path

from forwarder.settings import SETTINGS_FILE_VARIABLE, setting_names

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()


def test_every_setting_is_in_the_settings_table_and_nothing_else_is() -> None:
    section = OPERATIONS.split("\n## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))
    assert documented == setting_names() | {SETTINGS_FILE_VARIABLE}


def test_readme_names_the_two_commands() -> None:
    assert "make run" in README
    assert "make test" in README


def test_the_readme_is_short_and_every_page_it_links_exists() -> None:
    assert len(README.splitlines()) < 300
    links = re.findall(r"\]\(((?:docs/)[^)#]+)", README)
    assert {"docs/operations.md", "docs/cohorts.md", "docs/mapping.md", "docs/performance.md"} <= set(links)
    for link in links:
        assert (ROOT / link).is_file(), link
