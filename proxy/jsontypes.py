"""The one name for JSON that crosses the wire.

`JsonObject` is a JSON object as a sender sent it or as PagerDuty (or a console reader)
will read it: Alertmanager's and Datadog's bodies, Events v2 bodies and payloads, template
contexts, the admin API's answers. Its shape is checked where it is read (proxy/ingest,
field by field, each problem named) and fixed where it is built (proxy/render.py);
the proxy's own state never is one (proxy/state.py, proxy/model.py).
"""

from __future__ import annotations

from typing import Any, TypeAlias

JsonObject: TypeAlias = dict[str, Any]
