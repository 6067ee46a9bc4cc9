"""``forwarder check``: what each half can find wrong before the first event, one line per check.

Each half contributes its checks (``forwarder.commands.check``, ``forwarder.cohorts.check``); the registry puts them
together. A line is ``ok <check>: ...`` or ``FAIL <check>: <the problem and the setting to change>``, never a
secret; the command exits 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from forwarder.command import Command, no_arguments
from forwarder.settings import Settings, load_settings


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    text: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.check}: {self.text}"


Checker = Callable[[Settings], Awaitable[list[Finding]]]


async def run_checks(settings: Settings, checkers: Sequence[Checker]) -> list[Finding]:
    findings: list[Finding] = []
    for checker in checkers:
        findings += await checker(settings)
    return findings


def check_command(checkers: Sequence[Checker]) -> Command:
    def run(args: argparse.Namespace) -> int:
        findings = asyncio.run(run_checks(load_settings(Settings), checkers))
        for finding in findings:
            print(finding.line(), flush=True)
        return 0 if all(f.ok for f in findings) else 1

    return Command(no_arguments, run)
