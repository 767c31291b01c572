"""In-memory stored `/v1/responses` for servers without a database (`nodetool chat-server`).

Same interface and per-user scoping as `nodetool.storage.responses.SqlResponseStore`, without
importing SQLAlchemy; keeps the newest `capacity` responses of the process.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from nodetool.storage.base import Record
from nodetool.storage.codec import iso, now


class MemoryResponseStore:
    """The newest `capacity` responses of this process (for servers without a database)."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], Record] = OrderedDict()

    async def save(
        self,
        user_id: str,
        response: dict[str, Any],
        input_items: list[dict[str, Any]],
        history: list[dict[str, Any]],
    ) -> None:
        key = (user_id, response["id"])
        old = self._items.pop(key, None)
        self._items[key] = {  # the caller hands over finished values: kept as they are
            "id": response["id"],
            "previous_response_id": response.get("previous_response_id"),
            "response": response,
            "input_items": input_items,
            "history": history,
            "created_at": old["created_at"] if old else iso(now()),
        }
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    async def get(self, user_id: str, id: str) -> Record | None:
        return self._items.get((user_id, id))

    async def delete(self, user_id: str, id: str) -> bool:
        return self._items.pop((user_id, id), None) is not None
