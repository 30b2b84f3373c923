"""LruTable (store/compact.py) behaves like a bounded OrderedDict used as an LRU map."""
from __future__ import annotations

import random
from collections import OrderedDict

import pytest

from scrapeshield.store.compact import LruTable


def contents(table: LruTable) -> list[tuple[int, float]]:
    return [(table.hashes[s], table.values[s]) for s in table.lru_slots()]


@pytest.mark.parametrize("seed", range(6))
def test_a_random_mix_of_operations_matches_an_ordered_dict_model(seed: int) -> None:
    # given a small table whose hashes collide often (few index slots, clustered hashes)
    rng = random.Random(seed)
    table, model = LruTable(50), OrderedDict[int, float]()
    hashes = [rng.choice([rng.randrange(-2**63, 2**63), rng.randrange(512) * 128 + rng.randrange(3)])
              for _ in range(200)]
    for step in range(5000):
        h = rng.choice(hashes)
        roll = rng.random()
        slot = table.find(h)
        # then a lookup finds exactly what the model holds
        assert bool(slot) == (h in model)
        if roll < 0.5:
            if slot:
                table.values[slot] = float(step)
                table.touch(slot)
                model[h] = float(step)
                model.move_to_end(h)
            else:
                table.insert(h, float(step))
                model[h] = float(step)
                if len(model) > 50:
                    model.popitem(last=False)
        elif roll < 0.8 and slot:
            table.remove(slot)
            del model[h]
        elif slot:
            table.touch(slot)
            model.move_to_end(h)
        assert len(table) == len(model)
    # and the least-recently-used order is the model's
    assert contents(table) == list(model.items())


def test_a_full_table_evicts_the_least_recently_used_entry() -> None:
    # given a full table whose oldest entry was used again
    table = LruTable(3)
    for h in (1, 2, 3):
        table.insert(h, float(h))
    table.touch(table.find(1))
    # when a fourth entry arrives
    table.insert(4, 4.0)
    # then the least recently used one (2) is gone
    assert [table.hashes[s] for s in table.lru_slots()] == [3, 1, 4]
    assert table.find(2) == 0


def test_churn_reuses_freed_slots_instead_of_growing() -> None:
    # given a table filled to its bound
    table = LruTable(2000)
    for h in range(2000):
        table.insert(h * 7919, 0.0)
    # when ten times as many new keys pass through it
    for h in range(2000, 22000):
        table.insert(h * 7919, 0.0)
    # then only the first 2000 slots were ever used and it still holds its bound
    assert max(table.lru_slots()) == 2000
    assert len(table) == 2000
    assert all(table.find(h * 7919) for h in range(20000, 22000))


def test_a_second_value_column_is_kept_per_entry() -> None:
    table = LruTable(10, two_values=True)
    slot = table.insert(42, 1.5, tag=7, second=9.0)
    assert (table.values[slot], table.seconds[slot], table.tags[slot]) == (1.5, 9.0, 7)


@pytest.mark.parametrize("seed", range(4))
def test_find_touch_is_find_then_touch(seed: int) -> None:
    # given two tables with the same random history, hashes colliding often
    rng = random.Random(seed)
    fused, plain = LruTable(40), LruTable(40)
    hashes = [rng.randrange(256) * 64 + rng.randrange(3) for _ in range(120)]
    for step in range(4000):
        h = rng.choice(hashes)
        # when one finds and touches in one call and the other in two
        slot = fused.find_touch(h)
        expected = plain.find(h)
        if expected:
            plain.touch(expected)
        # then both find the same slot, and hold the same entries in the same LRU order
        assert slot == expected
        roll = rng.random()
        if not slot and roll < 0.7:
            fused.insert(h, float(step))
            plain.insert(h, float(step))
        elif slot and roll < 0.2:
            fused.remove(slot)
            plain.remove(slot)
        assert (fused.head, fused.tail, len(fused)) == (plain.head, plain.tail, len(plain))
    assert contents(fused) == contents(plain)
    assert fused.find_touch(-1) == 0 and contents(fused) == contents(plain)  # a miss touches nothing


def test_a_large_table_starts_small_and_grows_with_its_entries() -> None:
    # given a table bounded at a million entries
    table = LruTable(1_000_000, two_values=True)
    # then an empty one holds no per-slot column items
    assert len(table.hashes) == len(table.values) == len(table.prev) == 0
    # when a thousand entries arrive
    for h in range(1000):
        table.insert(h * 2654435761, float(h), second=-float(h))
    # then its columns hold about as many slots (doubling), not a million, and every entry is found
    assert 1000 < len(table.hashes) <= 2048
    assert len(table.seconds) == len(table.hashes)
    assert all(table.values[table.find(h * 2654435761)] == float(h) for h in range(1000))
    assert all(table.seconds[table.find(h * 2654435761)] == -float(h) for h in range(1000))


def test_columns_never_grow_past_the_bound_under_churn() -> None:
    # given a table of 100 entries
    table = LruTable(100)
    # when ten thousand distinct keys pass through it
    for h in range(10_000):
        table.insert(h, 0.0)
    # then its columns hold exactly 100 slots (and the unused slot 0)
    assert len(table.hashes) == len(table.values) == len(table.next) == 101
    assert len(table) == 100 and all(table.find(h) for h in range(9_900, 10_000))


@pytest.mark.parametrize("seed", range(3))
def test_entries_stay_findable_across_index_growth_and_removals(seed: int) -> None:
    # given random (colliding, negative) hashes inserted into a table large enough never to evict
    rng = random.Random(seed)
    table = LruTable(20_000)
    hashes = list({rng.choice([rng.randrange(-2**63, 2**63), rng.randrange(4096) * 64]) for _ in range(6000)})
    for h in hashes:
        table.insert(h, float(h % 1000))
    # when half of them are removed again
    for h in hashes[::2]:
        table.remove(table.find(h))
    # then exactly the other half is found, with its values, in insertion order
    assert all(table.find(h) == 0 for h in hashes[::2])
    assert [table.hashes[s] for s in table.lru_slots()] == hashes[1::2]
    assert all(table.values[table.find(h)] == float(h % 1000) for h in hashes[1::2])
