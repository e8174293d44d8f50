from orqen_common.lru import Lru


def test_the_least_recently_used_goes_first() -> None:
    kept: Lru[str, int] = Lru(2)
    kept.put("a", 1)
    kept.put("b", 2)
    assert kept.get("a") == 1  # now the most recently used
    kept.put("c", 3)
    assert ("a" in kept, "b" in kept, "c" in kept) == (True, False, True)
    kept.put("a", 10)  # replacing is using
    kept.put("d", 4)
    assert (kept.get("a"), kept.get("c"), len(kept)) == (10, None, 2)


def test_weighed_entries_stay_within_their_weight() -> None:
    kept: Lru[str, bytes] = Lru(10, weigh=lambda _, value: len(value))
    kept.put("a", b"xxxx")
    kept.put("b", b"xxxx")
    kept.put("a", b"xxxxxx")  # a is replaced and is now the newest: 4 + 6
    assert ("a" in kept, "b" in kept) == (True, True)
    kept.put("c", b"x")  # 11: b, the least recently used, goes
    assert ("a" in kept, "b" in kept, "c" in kept) == (True, False, True)
    kept.pop("a")
    kept.put("d", b"xxxxxxxxx")  # 1 + 9 fits again
    assert ("c" in kept, "d" in kept) == (True, True)
    kept.put("e", b"x" * 11)  # heavier than the bound alone: nothing stays
    assert len(kept) == 0


def test_a_key_not_kept_is_none_and_forgetting_it_changes_nothing() -> None:
    kept: Lru[str, int] = Lru(1)
    kept.put("a", 1)
    assert "b" not in kept and kept.get("b") is None
    kept.pop("b")  # not kept: nothing to forget
    assert kept.get("a") == 1
