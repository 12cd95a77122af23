"""Uploads straight from the socket into the artifact store.

The store's `put_stream` is blocking (disk writes, hashing), so it runs in a worker thread and
pulls the request body one chunk at a time from the event loop: memory stays at one chunk
whatever the size, and the size cap stops the upload as soon as it is passed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio.from_thread
import anyio.to_thread
from starlette.requests import Request

from exportq.storage import ArtifactStore, StoredObject


async def store_body(request: Request, store: ArtifactStore, max_bytes: int) -> StoredObject:
    body = request.stream()
    return await anyio.to_thread.run_sync(store.put_stream, _pull(body), max_bytes)


def _pull(body: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The request body as a blocking iterator, for use in a worker thread."""
    while True:
        try:
            chunk = anyio.from_thread.run(_next, body)
        except StopAsyncIteration:
            return
        if chunk:
            yield chunk


async def _next(body: AsyncIterator[bytes]) -> bytes:
    return await anext(body)
