"""Read-only HTTP views of the tables, answered by the worker that owns the key.

Faust's table routing forwards a request to the worker whose partitions hold the key, so any
worker of a role can be asked. Entries are shown without their internal memo.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import faust
from faust.web import Response

HIDDEN = ("memo", "held")


def public_view(entry: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in entry.items() if k not in HIDDEN}
    if "held" in entry:
        view["held_requests"] = len(entry["held"])
        # who waits and until when, for `vprov status` (vprov/ops/stage.py); not the raw requests
        view["held"] = [{k: item[k] for k in ("message_id", "device_id", "until_ms") if k in item}
                        for item in entry["held"]]
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
    routed = app.table_route(table=table, match_info=param)(view)

    async def owner_view(web: faust.web.View, request: faust.web.Request, **kw: Any) -> Response:
        try:
            return await routed(web, request, **kw)
        except aiohttp.ClientError as exc:
            # The owner Faust last knew left the group, or is restarting: the next rebalance
            # settles it. 503 tells clients to retry (vprov status and replay do).
            key = request.match_info[param]
            return web.json({"error": f"the worker that owns {param} {key} cannot be reached "
                             f"({exc}); the group is rebalancing, retry in a few seconds",
                             param: key}, status=503)

    owner_view.__name__ = view.__name__
    app.page(path)(owner_view)
