"""The README's settings table is the one place settings are documented: it must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from forwarder.settings import SETTINGS_FILE_VARIABLE, setting_names

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table_and_nothing_else_is() -> None:
    section = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))
    assert documented == setting_names() | {SETTINGS_FILE_VARIABLE}


def test_readme_names_the_two_commands() -> None:
    assert "make run" in README
    assert "make test" in README
