"""Processes as Linux's /proc shows them, for the tests and the benchmarks."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """Running (a process that ended is a zombie until its parent reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def children(pid: int | None = None) -> list[int]:
    """The running children of `pid` (this process by default)."""
    pid = os.getpid() if pid is None else pid
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split() if alive(int(c))]
