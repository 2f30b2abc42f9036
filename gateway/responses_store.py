"""Stored responses: SQLite (stdlib ``sqlite3``), bounded by count and age.

One row per stored response: the Response object as returned, and its
context, the input items the model was given (those of the whole
``previous_response_id`` chain, then the request's own), so a next turn
rebuilds its conversation from one row and ``input_items`` lists it. Its
output items are also kept by id, for ``item_reference`` input items (the
Vercel AI SDK refers to earlier output that way). Rows
older than ``max_age`` or beyond the newest ``max_count`` are deleted as new
ones arrive. The database is a file (``gateway.responses_store``, under the
run folder by default), so conversations survive a gateway restart;
``":memory:"`` keeps them for the process only. Background responses a
restart interrupted are marked failed when the file is opened.

The calls run on the event loop, on purpose: each is one indexed row read or
write of a compressed blob (a long agent conversation is tens of KB) in WAL
mode with ``synchronous=NORMAL``, so no fsync waits on a commit; that is well
under a millisecond, less than handing it to a thread would cost, and keeps
the gateway free of hidden threads. The file is opened on first use, so a
gateway that never serves ``/v1/responses`` creates none.
"""

from __future__ import annotations

import sqlite3
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import msgspec

from gateway.responses_objects import Item, Response, ResponseError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    response BLOB NOT NULL,
    context BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created ON responses (created);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    response TEXT NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
    item BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS items_response ON items (response);
"""
_UNFINISHED = ("queued", "in_progress")


class ResponseStore:
    def __init__(
        self,
        path: str,
        *,
        max_count: int,
        max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.max_count = max_count
        self.max_age = max_age
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._encode = msgspec.json.Encoder()
        self._response = msgspec.json.Decoder(Response)
        self._items = msgspec.json.Decoder(list[Item])
        self._item = msgspec.json.Decoder(Item)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None)
            if self.path != ":memory:":
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
            self._db = db
            self._fail_interrupted()
        return self._db

    def _fail_interrupted(self) -> None:
        rows = self._connection().execute(
            "SELECT response FROM responses WHERE status IN (?, ?)", _UNFINISHED
        )
        for (blob,) in rows.fetchall():
            response = self._response.decode(blob)
            response.status = "failed"
            response.error = ResponseError(
                "server_error", "the gateway restarted before this background response finished"
            )
            self.update(response)

    def put(self, response: Response, context: list[Item]) -> None:
        """Store (or replace) a response and the items it was given."""
        db = self._connection()
        now = self._clock()
        db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
            (
                response.id,
                now,
                response.status,
                self._encode.encode(response),
                zlib.compress(self._encode.encode(context), 1),
            ),
        )
        self._put_items(response)
        db.execute("DELETE FROM responses WHERE created < ?", (now - self.max_age,))
        db.execute(
            "DELETE FROM responses WHERE rowid IN "
            "(SELECT rowid FROM responses ORDER BY rowid DESC LIMIT -1 OFFSET ?)",
            (self.max_count,),
        )

    def update(self, response: Response) -> None:
        """A stored response's new state (a background response that finished)."""
        self._connection().execute(
            "UPDATE responses SET status = ?, response = ? WHERE id = ?",
            (response.status, self._encode.encode(response), response.id),
        )
        self._put_items(response)

    def _put_items(self, response: Response) -> None:
        self._connection().executemany(
            "INSERT OR REPLACE INTO items VALUES (?, ?, ?)",
            [(item.id, response.id, self._encode.encode(item)) for item in response.output],
        )

    def item(self, item_id: str) -> Item | None:
        """An output item of a stored response, by its id."""
        found = (
            self._connection()
            .execute(
                "SELECT items.item FROM items JOIN responses ON responses.id = items.response "
                "WHERE items.id = ? AND responses.created >= ?",
                (item_id, self._clock() - self.max_age),
            )
            .fetchone()
        )
        return self._item.decode(found[0]) if found is not None else None

    def get(self, response_id: str) -> Response | None:
        row = self._row("response", response_id)
        return self._response.decode(row) if row is not None else None

    def context(self, response_id: str) -> list[Item] | None:
        """The input items a stored response was given, oldest first."""
        row = self._row("context", response_id)
        return self._items.decode(zlib.decompress(row)) if row is not None else None

    def delete(self, response_id: str) -> bool:
        cursor = self._connection().execute("DELETE FROM responses WHERE id = ?", (response_id,))
        return cursor.rowcount > 0

    def _row(self, column: str, response_id: str) -> bytes | None:
        found = (
            self._connection()
            .execute(
                f"SELECT {column} FROM responses WHERE id = ? AND created >= ?",
                (response_id, self._clock() - self.max_age),
            )
            .fetchone()
        )
        return found[0] if found is not None else None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
