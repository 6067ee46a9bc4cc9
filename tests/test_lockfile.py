"""``docker/requirements.lock`` matches ``pyproject.toml``: stamped with its dependencies, every one of them pinned
to a version its specifier allows, with hashes (the image installs with ``--require-hashes``)."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement

from devkit.lockfile import LOCK, dependencies, digest, stamped


def pins(lock: Path = LOCK) -> dict[str, str]:
    found = {}
    for line in lock.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.\-]+)==([^ \\]+)", line):
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def test_the_lock_was_made_from_the_current_dependencies() -> None:
    assert stamped() == digest(dependencies()), "pyproject.toml's dependencies changed: run make lock"


def test_a_changed_dependency_is_caught() -> None:
    changed = [d if not d.startswith("httpx") else "httpx>=0.29,<0.30" for d in dependencies()]
    assert digest(changed) != stamped()


def test_every_dependency_is_pinned_within_its_specifier_with_hashes() -> None:
    pinned = pins()
    for requirement in map(Requirement, dependencies()):
        name = requirement.name.lower().replace("_", "-")
        assert name in pinned, f"{name} is not in the lock: run make lock"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} is outside {requirement}"
    text = LOCK.read_text()
    assert text.count("==") == len(pinned)
    assert text.count("--hash=sha256:") >= len(pinned)
    assert pinned["faust-streaming"] == "0.15.3"  # the version the fork is written against
