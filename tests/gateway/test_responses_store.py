"""Stored responses in SQLite: kept, bounded by count and age, and kept across a reopen."""

from __future__ import annotations

from pathlib import Path

import msgspec

from gateway.responses_input import input_items
from gateway.responses_objects import Item
from gateway.responses_store import ResponseStore
from tests.gateway.test_responses_events import skeleton


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store_at(path: str, clock: Clock | None = None, **bounds: float) -> ResponseStore:
    return ResponseStore(
        path,
        max_count=int(bounds.get("max_count", 100)),
        max_age=bounds.get("max_age", 3600.0),
        clock=clock or Clock(),
    )


CONTEXT: list[Item] = input_items([{"role": "user", "content": "hi"}])


def test_a_stored_response_and_its_context_come_back() -> None:
    store = store_at(":memory:")
    response = skeleton(id="resp_a", status="completed")
    store.put(response, CONTEXT)
    assert store.get("resp_a") == response
    assert store.context("resp_a") == CONTEXT
    assert store.get("resp_other") is None and store.context("resp_other") is None


def test_delete_removes_it_once() -> None:
    store = store_at(":memory:")
    store.put(skeleton(id="resp_a"), CONTEXT)
    assert store.delete("resp_a") and not store.delete("resp_a")
    assert store.get("resp_a") is None


def test_only_the_newest_max_count_are_kept() -> None:
    store = store_at(":memory:", max_count=2)
    for name in "abc":
        store.put(skeleton(id=f"resp_{name}"), CONTEXT)
    assert [store.get(f"resp_{n}") is not None for n in "abc"] == [False, True, True]


def test_responses_older_than_max_age_are_gone() -> None:
    clock = Clock()
    store = store_at(":memory:", clock, max_age=60)
    store.put(skeleton(id="resp_old"), CONTEXT)
    clock.now += 61
    assert store.get("resp_old") is None  # expired, before any pruning
    store.put(skeleton(id="resp_new"), CONTEXT)
    assert store.get("resp_new") is not None and store.context("resp_old") is None


def test_a_file_store_survives_a_reopen_and_fails_interrupted_background_responses(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "run" / "responses.sqlite3")
    first = store_at(path)
    first.put(skeleton(id="resp_done", status="completed"), CONTEXT)
    first.put(skeleton(id="resp_running", status="in_progress", background=True), CONTEXT)
    first.close()
    again = store_at(path)
    done = again.get("resp_done")
    assert done is not None and done.status == "completed"
    assert again.context("resp_done") == CONTEXT
    running = again.get("resp_running")
    assert running is not None and running.status == "failed"
    assert running.error is not None and "restarted" in running.error.message


def test_update_changes_a_stored_response_in_place() -> None:
    store = store_at(":memory:")
    response = skeleton(id="resp_bg", status="in_progress")
    store.put(response, CONTEXT)
    store.update(msgspec.structs.replace(response, status="cancelled"))
    stored = store.get("resp_bg")
    assert stored is not None and stored.status == "cancelled"
    assert store.context("resp_bg") == CONTEXT


def test_nothing_is_created_until_first_use(tmp_path: Path) -> None:
    path = tmp_path / "never" / "responses.sqlite3"
    store = store_at(str(path))
    store.close()
    assert not path.exists()


def test_output_items_are_found_by_id_until_their_response_goes() -> None:
    from gateway.responses_objects import MessageItem, OutputText

    store = store_at(":memory:", max_count=1)
    message = MessageItem("msg_out", "completed", "assistant", [OutputText("hi")])
    store.put(skeleton(id="resp_a", output=[message]), CONTEXT)
    assert store.item("msg_out") == message and store.item("msg_other") is None
    store.put(skeleton(id="resp_b"), CONTEXT)  # resp_a is pruned, and its items with it
    assert store.item("msg_out") is None
