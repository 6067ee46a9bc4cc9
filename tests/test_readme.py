"""The README's settings table is the one place settings are documented: it must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from forwarder.settings import SETTINGS_FILE_VARIABLE, Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table_and_nothing_else_is() -> None:
    section = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))
    names = set()
    for field in Settings.model_fields.values():
        assert isinstance(field.validation_alias, AliasChoices)
        names.add(str(field.validation_alias.choices[0]))
    assert documented == names | {SETTINGS_FILE_VARIABLE}


def test_readme_names_the_two_commands() -> None:
    assert "make run" in README
    assert "make test" in README
