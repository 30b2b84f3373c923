"""Adaptive proof-of-work difficulty."""
from __future__ import annotations

import pytest

from scrapeshield.session.difficulty import DifficultyCurve

CURVE = DifficultyCurve(base=16, net_unit=2, net_cap=8, stack_unit=4, stack_cap=2, cold_stack_cap=6, maximum=26)


@pytest.mark.parametrize(("stack_rate", "net_rate", "cold", "bits"), [
    (0, 0, False, 16),      # a quiet site: a person's one short solve
    (0, 1, False, 16),      # their own session on their own network
    (100, 0, False, 18),    # sharing a browser build with a farm: at most stack_cap more
    (100, 0, True, 22),     # ... arriving cold on a record: at most cold_stack_cap more
    (0, 4, False, 18),      # every 2 identities on one /24 add a bit
    (0, 100, False, 24),    # ... up to net_cap
    (100, 100, True, 26),   # never above the maximum
    (-5, -5, False, 16),    # decayed counters never lower it
])
def test_the_curve(stack_rate: float, net_rate: float, cold: bool, bits: int) -> None:
    assert CURVE.bits(stack_rate, net_rate, cold=cold) == bits


def test_every_identity_a_farm_makes_on_one_network_costs_more_than_the_last() -> None:
    costs = [2 ** CURVE.bits(0, n) for n in range(0, 17, 2)]
    assert costs == sorted(costs) and costs[-1] >= 2 ** 8 * costs[0]


@pytest.mark.parametrize("kwargs", [{"base": 0}, {"base": 20, "maximum": 18}, {"maximum": 33},
                                    {"net_unit": 0}, {"stack_cap": -1}])
def test_nonsense_curves_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DifficultyCurve(**kwargs)  # type: ignore[arg-type]
