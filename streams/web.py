"""Read-only HTTP views of the tables, answered by the worker that owns the key.

Faust's table routing forwards a request to the worker whose partitions hold the key, so any
worker of a role can be asked. Entries are shown without their internal memo.
"""

from __future__ import annotations

from typing import Any

import faust
from aiohttp.web import Response

HIDDEN = ("memo", "held")


def public_view(entry: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in entry.items() if k not in HIDDEN}
    if "held" in entry:
        view["held_requests"] = len(entry["held"])
    return view


def add_table_view(app: faust.App, table: Any, path: str, param: str, what: str) -> None:
    """``GET path`` -> the entry for ``{param}`` as JSON, 404 with a reason when absent."""

    async def view(web: faust.web.View, request: faust.web.Request, **_: Any) -> Response:
        key = request.match_info[param]
        entry = table.get(key)
        if entry is None:
            return web.json({"error": f"no {what} {key} here", param: key}, status=404)
        return web.json(public_view(entry))

    view.__name__ = f"view_{table.name.replace('-', '_')}"
    app.page(path)(app.table_route(table=table, match_info=param)(view))
