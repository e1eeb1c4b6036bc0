"""One contract suite for every StateStore: memory and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelstream.errors import FeatureError
from modelstream.features.state import MemoryStateStore, SqliteStateStore, StateStore


@pytest.fixture(params=["memory", pytest.param("sqlite", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    made: StateStore = (
        MemoryStateStore() if request.param == "memory" else SqliteStateStore(tmp_path / "s.db")
    )
    assert isinstance(made, StateStore)
    yield made
    made.close()


def test_put_get_delete(store: StateStore) -> None:
    assert store.get("a") is None
    store.put("a", {"w": [[1, [0, None, 2.5]]], "f": [None]})
    assert store.get("a") == {"w": [[1, [0, None, 2.5]]], "f": [None]}
    store.delete("a")
    assert store.get("a") is None
    store.delete("never")  # absent: nothing happens


def test_values_are_copies(store: StateStore) -> None:
    value = {"x": [1, 2]}
    store.put("k", value)
    value["x"].append(3)
    got = store.get("k")
    assert got == {"x": [1, 2]}
    got["x"].append(9)
    assert store.get("k") == {"x": [1, 2]}


def test_items_by_prefix_in_key_order(store: StateStore) -> None:
    for key in ["e/1/b", "e/1/a", "e/2/a", "m/1"]:
        store.put(key, key)
    store.flush()
    store.put("e/1/c", 3)
    store.delete("e/1/b")
    assert [k for k, _ in store.items("e/1/")] == ["e/1/a", "e/1/c"]
    assert len(list(store.items())) == 4


def test_rejects_values_that_are_not_json(store: StateStore) -> None:
    with pytest.raises(FeatureError, match="JSON"):
        store.put("k", {"x": object()})


def test_flush_is_idempotent(store: StateStore) -> None:
    store.put("k", 1)
    store.flush()
    store.flush()
    assert store.get("k") == 1


@pytest.mark.integration
def test_sqlite_keeps_only_flushed_changes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = SqliteStateStore(path)
    first.put("kept", 1)
    first.flush()
    first.put("lost", 2)
    first.delete("kept")
    first.close()  # as a crash would: the unflushed changes never reach the file
    second = SqliteStateStore(path)
    assert second.get("kept") == 1
    assert second.get("lost") is None
    second.close()
