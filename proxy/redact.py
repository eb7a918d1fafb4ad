"""Routing keys and tokens are secrets: only their masked form leaves the process."""

from __future__ import annotations

__all__ = ["mask"]


def mask(secret: str | None) -> str:
    """`abcd…wxyz` for a long secret, `…` for a short one, `-` for none."""
    if not secret:
        return "-"
    if len(secret) < 12:
        return "…"
    return f"{secret[:4]}…{secret[-4:]}"
