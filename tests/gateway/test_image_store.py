"""The in-memory store behind response_format "url": bounded, expiring."""

from __future__ import annotations

from gateway.image_store import ImageStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_images_expire_after_their_ttl() -> None:
    clock = Clock()
    store = ImageStore(capacity=4, ttl=60, clock=clock)
    image_id = store.put(b"png")
    clock.now += 59.9
    assert store.get(image_id) == b"png"
    clock.now += 0.1
    assert store.get(image_id) is None and len(store) == 0


def test_each_image_lives_its_own_ttl() -> None:
    clock = Clock()
    store = ImageStore(capacity=4, ttl=60, clock=clock)
    first = store.put(b"1")
    clock.now += 30
    second = store.put(b"2")
    clock.now += 30
    assert (store.get(first), store.get(second)) == (None, b"2")


def test_the_oldest_image_makes_room() -> None:
    store = ImageStore(capacity=2, ttl=60)
    first, second, third = store.put(b"1"), store.put(b"2"), store.put(b"3")
    assert store.get(first) is None
    assert (store.get(second), store.get(third)) == (b"2", b"3")
    assert len({first, second, third}) == 3 and len(first) >= 20  # unguessable ids
