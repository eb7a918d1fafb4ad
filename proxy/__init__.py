"""alert-proxy: an alert-correlation proxy in front of the PagerDuty Events API v2."""

from __future__ import annotations

__all__ = ["__version__"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alert-proxy")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "0.2.0+source"


__version__ = _version()
