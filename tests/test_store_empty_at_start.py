"""A project store that held nothing when its build opened it (no database, no records of
the older layout) answers lookups without a query: it can hold only what that build put
there, the build holding the project's lock. It still finds what it stored itself, and a
store that held something is asked as before. In-process, real files."""

from __future__ import annotations

import pytest
import storekit

from rlmake.cache.housekeeping import RECORD
from rlmake.cache.local import LocalStore
from rlmake.cache.projectstore import DATABASE_NAME, ProjectStore
from rlmake.state import StoreDB


@pytest.fixture
def no_queries(monkeypatch):
    def refuse(self, *args):
        raise AssertionError("a lookup queried a store that held nothing")
    monkeypatch.setattr(StoreDB, "get", refuse)


def test_an_empty_store_answers_a_lookup_without_a_query(tmp_path, no_queries):
    store = ProjectStore(str(tmp_path / "cache"))
    assert store.get_action("ab" * 20) is None
    assert not (tmp_path / "cache" / DATABASE_NAME).exists()    # nor made a database
    store.close()


def test_an_empty_store_finds_what_it_stored_itself(tmp_path, monkeypatch):
    store = ProjectStore(str(tmp_path / "cache"))
    store.put_action("ab" * 20, b"record")
    assert store.get_action("ab" * 20) == b"record"
    monkeypatch.setattr(StoreDB, "get", lambda self, *args: pytest.fail("queried"))
    assert store.get_action("cd" * 20) is None
    store.close()


def test_a_store_that_held_something_is_asked(tmp_path):
    first = ProjectStore(str(tmp_path / "cache"))
    first.put_action("ab" * 20, b"record")
    first.close()
    again = ProjectStore(str(tmp_path / "cache"))
    assert again.get_action("ab" * 20) == b"record"
    again.close()
    assert storekit.entries(tmp_path / "cache", RECORD) == {"ab" * 20: b"record"}


def test_a_store_of_the_older_layout_without_a_database_is_asked(tmp_path):
    LocalStore(str(tmp_path / "cache")).put_action("ab" * 20, b"older record")
    store = ProjectStore(str(tmp_path / "cache"))
    assert store.get_action("ab" * 20) == b"older record"
    store.close()
