"""The in-memory store behind response_format "url": bounded, expiring."""

from __future__ import annotations

import time

import pytest

from gateway.errors import APIError
from gateway.image_store import ImageStore
from gateway.images_api import _size


def test_images_expire_after_their_ttl() -> None:
    store = ImageStore(capacity=4, ttl=0.05)
    image_id = store.put(b"png")
    assert store.get(image_id) == b"png"
    time.sleep(0.1)
    assert store.get(image_id) is None and len(store) == 0


def test_the_oldest_image_makes_room() -> None:
    store = ImageStore(capacity=2, ttl=60)
    first, second, third = store.put(b"1"), store.put(b"2"), store.put(b"3")
    assert store.get(first) is None
    assert (store.get(second), store.get(third)) == (b"2", b"3")
    assert len({first, second, third}) == 3 and len(first) >= 20  # unguessable ids


@pytest.mark.parametrize(
    ("size", "expected"), [("64x48", (64, 48)), ("auto", (0, 0)), (None, (0, 0))]
)
def test_size_is_width_by_height(size: str | None, expected: tuple[int, int]) -> None:
    assert _size(size) == expected


@pytest.mark.parametrize("size", ["64x50", "8x64", "4096x4096", "64", "64X64", " 64x64"])
def test_bad_size_names_the_param(size: str) -> None:
    with pytest.raises(APIError) as caught:
        _size(size)
    assert caught.value.status == 400 and caught.value.param == "size"
