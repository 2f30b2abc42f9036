"""Generated images served by URL (``response_format: "url"``): a small in-memory store.

OpenAI answers ``url`` with a link that expires; so does this gateway: each
PNG gets an unguessable id, lives for ``ttl`` seconds, and the oldest is
dropped when ``capacity`` images are held. Nothing touches the disk, and a
restart forgets every URL.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable


class ImageStore:
    def __init__(
        self, capacity: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._clock = clock
        # id -> (expiry on ``clock``, PNG bytes), oldest first.
        self._images: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def put(self, png: bytes) -> str:
        """Keep ``png``; return its id (128 random bits: the URL is the capability)."""
        self._expire()
        image_id = secrets.token_urlsafe(16)
        self._images[image_id] = (self._clock() + self.ttl, png)
        while len(self._images) > self.capacity:
            self._images.popitem(last=False)
        return image_id

    def get(self, image_id: str) -> bytes | None:
        self._expire()
        entry = self._images.get(image_id)
        return entry[1] if entry is not None else None

    def __len__(self) -> int:
        self._expire()
        return len(self._images)

    def _expire(self) -> None:
        now = self._clock()
        while self._images:
            first = next(iter(self._images.values()))
            if first[0] > now:
                return
            self._images.popitem(last=False)
