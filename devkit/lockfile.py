"""``docker/requirements.lock``: the image's dependencies pinned with their hashes (``make lock``), and the stamp
that ties it to ``pyproject.toml``'s dependencies, so a test fails when one changed without the other.

``python -m devkit.lockfile stamp`` writes the stamp after ``uv pip compile`` wrote the lock.
"""

from __future__ import annotations

import hashlib
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "docker" / "requirements.lock"
STAMP = "# pyproject.toml dependencies sha256: "


def dependencies(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def digest(requirements: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()


def stamped(lock: Path = LOCK) -> str | None:
    for line in lock.read_text().splitlines():
        if line.startswith(STAMP):
            return line.removeprefix(STAMP).strip()
    return None


def stamp(lock: Path = LOCK) -> None:
    lines = [line for line in lock.read_text().splitlines() if not line.startswith(STAMP)]
    lock.write_text("\n".join([STAMP + digest(dependencies()), *lines]) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["stamp"]:
        sys.exit("usage: python -m devkit.lockfile stamp")
    stamp()
