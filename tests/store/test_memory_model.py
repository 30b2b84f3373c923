"""The memory store's inlined arithmetic is `gcra.conform_all` and `base.decay`, bit for bit.

`MemoryStore.apply_now` inlines GCRA and the score decay for speed; these tests run seeded
workloads against a plain model that calls the pure functions, and compare every answer."""
from __future__ import annotations

import random
from collections import OrderedDict

import pytest

from scrapeshield.gcra import BucketLimit, conform_all, state_after
from scrapeshield.store.base import Batch, BucketCheck, ScoreUpdate, decay
from scrapeshield.store.memory import MemoryStore

LIMITS = [BucketLimit(5, 1.0, 3), BucketLimit(1, 1.0, 0), BucketLimit(30, 60.0, 10), BucketLimit(3, 0.7, 2)]
HALF_LIVES = [5.0, 30.0, 0.0]


class ModelStore:
    """Unbounded dicts and the pure functions: what the memory store must answer."""

    def __init__(self) -> None:
        self.tats: dict[tuple[str, str], float] = {}
        self.scores: dict[tuple[str, str], tuple[float, float]] = {}

    def apply(self, batch: Batch, now: float) -> tuple[object, ...]:
        ids = [(c.bucket_id, c.key) for c in batch.buckets]
        limits = [c.limit for c in batch.buckets]
        refused, tats = conform_all([self.tats.get(i) for i in ids], now, limits)
        if refused < 0:
            for i, tat in zip(ids, tats, strict=True):
                assert tat is not None
                self.tats[i] = tat
        states = tuple(state_after(t, now, lim, refused < 0) for t, lim in zip(tats, limits, strict=True))
        values = []
        for up in batch.scores:
            value, since = self.scores.get((up.score_id, up.key), (0.0, now))
            value = max(0.0, decay(value, since, now, up.half_life) + up.delta)
            self.scores[up.score_id, up.key] = (value, now)
            values.append(value)
        return refused, states, tuple(values)


def workload(seed: int, steps: int = 3000) -> list[tuple[Batch, float]]:
    rng = random.Random(seed)
    keys = [f"ip:198.51.100.{i}" for i in range(6)]
    now = 1_700_000_000.0 + rng.random()
    ops = []
    for _ in range(steps):
        now += rng.choice([0.0, 0.0, 0.001, 0.05, 0.13, 0.4, 1.7, 9.0])
        key = rng.choice(keys)
        checks = tuple(BucketCheck(f"b{i}", rng.choice(keys[:2]) if i == 3 else key, LIMITS[i])
                       for i in sorted(rng.sample(range(4), rng.randint(0, 4))))
        if checks and rng.random() < 0.1:  # a bucket twice in one batch (two rules sharing a limit)
            checks = (*checks, checks[0])
        scores = tuple(ScoreUpdate(f"s{i}", rng.choice(keys), rng.choice([0.0, 0.0, -1.0, 0.5, 1.0, 2.5]),
                                   half_life=HALF_LIVES[i])
                       for i in range(rng.randint(0, 3)))
        ops.append((Batch((), checks, scores), now))
    return ops


@pytest.mark.parametrize("seed", range(4))
def test_memory_answers_what_the_pure_functions_answer(seed: int) -> None:
    # given the memory store and the model, fed the same seeded batches (zero-delta reads included)
    store, model = MemoryStore(), ModelStore()
    for batch, now in workload(seed):
        res = store.apply_now(batch, now)
        # then every answer is the model's, to the bit
        assert (res.refused, res.buckets, res.scores) == model.apply(batch, now)


def test_a_score_read_at_zero_stores_nothing() -> None:
    # given a memory store
    store = MemoryStore()
    now = 1_700_000_000.0
    # when a score nobody raised is read (delta 0) or lowered
    res = store.apply_now(Batch(scores=(ScoreUpdate("s", "ip:198.51.100.1", 0.0, 60.0),
                                        ScoreUpdate("s", "ip:198.51.100.2", -1.0, 60.0))), now)
    # then it reads 0 and takes no entry
    assert res.scores == (0.0, 0.0)
    assert store.status()["scores"] == 0
    # and a later raise counts from 0, as from a stored 0
    assert store.apply_now(Batch(scores=(ScoreUpdate("s", "ip:198.51.100.1", 2.0, 60.0),)), now + 5).scores == (2.0,)
    assert store.status()["scores"] == 1


def test_a_batch_that_grows_the_tables_answers_what_the_pure_functions_answer() -> None:
    # given batches of 300 new bucket and score keys each (the tables' columns and index grow
    # while the batch is applied), some keys twice in one batch
    store, model = MemoryStore(), ModelStore()
    now = 1_700_000_000.0
    for step in range(4):
        keys = [f"ip=10.{step}.{i // 256}.{i % 256}" for i in range(300)]
        batch = Batch((), tuple(BucketCheck("b0", k, LIMITS[0]) for k in [*keys, *keys[:5]]),
                      tuple(ScoreUpdate("s0", k, 1.0, HALF_LIVES[0]) for k in [*keys, *keys[::7]]))
        for _ in range(2):
            now += 0.05
            res = store.apply_now(batch, now)
            # then every answer is the model's, to the bit
            assert (res.refused, res.buckets, res.scores) == model.apply(batch, now)


class LruScoreModel:
    """Scores in an OrderedDict bounded by `max_scores`, each update applied in turn: a found
    entry becomes the most recently used, a new one evicts the least recently used when full."""

    def __init__(self, max_scores: int) -> None:
        self.max_scores = max_scores
        self.scores: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def apply(self, updates: tuple[ScoreUpdate, ...], now: float) -> tuple[float, ...]:
        values = []
        for up in updates:
            entry = (up.score_id, up.key)
            known = self.scores.get(entry)
            if known is not None:
                self.scores.move_to_end(entry)
                value = max(0.0, decay(known[0], known[1], now, up.half_life) + up.delta)
                self.scores[entry] = (value, now)
            else:
                value = max(0.0, 0.0 + up.delta)
                if value > 0.0:
                    if len(self.scores) >= self.max_scores:
                        self.scores.popitem(last=False)
                    self.scores[entry] = (value, now)
            values.append(value)
        return tuple(values)


@pytest.mark.parametrize("seed", range(4))
def test_a_full_score_table_evicts_within_a_batch_as_one_update_after_another(seed: int) -> None:
    # given a score table of 5 entries and batches of up to 40 updates over 12 entries: an
    # insert in a batch may evict an entry a later update of the same batch updates (or the
    # same entry is updated twice)
    rng = random.Random(seed)
    store, model = MemoryStore(max_scores=5), LruScoreModel(5)
    now = 1_700_000_000.0
    for _ in range(400):
        now += rng.choice([0.0, 0.01, 0.3, 2.0])
        updates = tuple(ScoreUpdate(f"s{rng.randint(0, 2)}", f"ip:198.51.100.{rng.randint(0, 3)}",
                                    rng.choice([0.0, -1.0, 0.5, 1.0, 2.5]), 30.0)
                        for _ in range(rng.randint(1, 40)))
        # then every value is the one-update-after-another model's, to the bit, and so is
        # what the table keeps, in its least-recently-used order
        assert store.apply_now(Batch(scores=updates), now).scores == model.apply(updates, now)
        table = store._scores
        assert [(table.values[s], table.seconds[s]) for s in table.lru_slots()] == list(model.scores.values())
