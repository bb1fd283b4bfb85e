import random

import pytest
from dcpue.collector.backoff import Backoff


def test_ceiling_doubles_from_base_and_stops_at_cap():
    b = Backoff(0.5, 6.0, random.Random(1))
    ceilings = []
    for _ in range(7):
        ceilings.append(b.ceiling())
        delay = b.next()
        assert 0.0 <= delay <= ceilings[-1]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 6.0, 6.0, 6.0]
    b.reset()
    assert b.ceiling() == 0.5


def test_delays_are_jittered_not_constant():
    b = Backoff(1.0, 1.0, random.Random(7))
    delays = {round(b.next(), 6) for _ in range(20)}
    assert len(delays) == 20


def test_invalid_bounds():
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)
