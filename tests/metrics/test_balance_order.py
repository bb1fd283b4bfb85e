"""The balance topology lists its meters in site order, the same in every process.

The daemon saves its rolling calculator laid out by this order and restores it only when the
layout matches; an order taken from a set changed with each process's string hashing, so
every restart rebuilt the calculator from raw history (found by tests/soak).
"""

from dcpue.config import example_path, load_site
from dcpue.metrics.balance import BalanceTopology


def test_all_meters_are_in_site_order():
    site = load_site(example_path("single_hall"))
    used = BalanceTopology.from_site(site).all_meters
    # Declared: the site file's order of the eight energy meters of the hall.
    assert used == ("grid-main", "ups-out", "ups-loss", "chiller-1", "crah-fans", "pumps",
                    "tower-1", "lighting")
