"""A stand-in OpenAI-compatible server for the benchmarks that measure the bot's own cost: it
answers at once, so whatever time is spent is the bot's (and the local round trip's)."""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web

from tests.servers import free_port

HEAD = {"id": "1", "object": "text_completion", "created": 0, "model": "stub"}


def event_stream(texts: list[str], finish: str) -> bytes:
    """Server-sent events: one per text, then the finish reason and ``[DONE]``."""
    events = [HEAD | {"choices": [{"index": 0, "text": text}]} for text in texts]
    events.append(HEAD | {"choices": [{"index": 0, "text": "", "finish_reason": finish}]})
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"


async def serve(body_for: Callable[[dict], bytes]) -> tuple[web.AppRunner, str]:
    """Start the stub on a free local port: ``/v1/models`` lists "stub", and every completion
    request is answered with ``body_for(its JSON)``. Returns the runner (to clean up) and the
    base URL."""

    async def models(_):
        return web.json_response({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    async def completions(http):
        return web.Response(body=body_for(await http.json()), content_type="text/event-stream")

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/v1"
