"""alert-proxy: an alert-correlation proxy in front of the PagerDuty Events API v2."""

__version__ = "0.1.0"
