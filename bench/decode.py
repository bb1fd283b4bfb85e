"""Decode + validate on one core: per-item decoder vs columnar decoder vs a naive pandas decode.

Run from the repository root: ``.venv/bin/python bench/decode.py [--readings N]``. Prints a
table (CPU time of this process, median of 3 runs over the same payloads); nothing is asserted.

* per-item: :meth:`PayloadDecoder.decode` (one :class:`Reading` per item, the decoder before
  the columnar path) plus the ``ReadingColumns.from_readings`` the store needs;
* columnar: :meth:`PayloadDecoder.decode_columns` (NumPy arrays, interned meter ids, vectorised
  validation and unit conversion);
* naive pandas: ``json.loads`` + ``pd.DataFrame(items)`` + arrays, with no validation at all;
* ``json.loads`` alone, the floor every Python decoder pays.

Payloads are the gateway's: ``{"readings": [{"meter", "value", "unit", "ts"}, ...]}`` of 500
readings over 80 meters (``bench/ingest.py``'s site).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
from dcpue.collector.normalise import MeterIndex
from dcpue.collector.payloads import PayloadDecoder
from dcpue.config.collector import Subscription
from dcpue.core.readings import ReadingColumns

from bench.ingest import T0_MS, bench_site, payloads

#: Receive time of every payload: after the newest reading (a 30-day window of minutes).
RECEIVED_MS = T0_MS + 30 * 86_400_000


def per_item(decoder: PayloadDecoder, data: list[bytes]) -> int:
    n = 0
    for payload in data:
        readings, _ = decoder.decode(payload, "dcpue/bench/readings", RECEIVED_MS)
        n += len(ReadingColumns.from_readings(readings))
    return n


def columnar(decoder: PayloadDecoder, data: list[bytes]) -> int:
    return sum(len(decoder.decode_columns(p, "dcpue/bench/readings", RECEIVED_MS)[0]) for p in data)


def naive_pandas(_: PayloadDecoder, data: list[bytes]) -> int:
    n = 0
    for payload in data:
        frame = pd.DataFrame(json.loads(payload)["readings"])
        arrays = (frame["ts"].to_numpy(np.int64), frame["meter"].to_numpy(object),
                  frame["value"].to_numpy(np.float64), frame["unit"].to_numpy(object))
        n += len(arrays[0])
    return n


def json_only(_: PayloadDecoder, data: list[bytes]) -> int:
    return sum(len(json.loads(p)["readings"]) for p in data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000)
    args = parser.parse_args()
    data = payloads(args.readings)
    decoder = PayloadDecoder(MeterIndex(bench_site()), Subscription(topic="#"), 1 << 20)
    print(f"{args.readings:,} readings in {len(data)} payloads, CPU time of one core, median of 3")
    print("| path | readings/s | vs naive pandas |\n| --- | ---: | ---: |")
    rates = {}
    for name, run in (("per-item decode (before)", per_item), ("columnar decode", columnar),
                      ("naive pandas, no validation", naive_pandas), ("json.loads only", json_only)):
        times = []
        for _ in range(3):
            started = time.process_time()
            assert run(decoder, data) == args.readings, name
            times.append(time.process_time() - started)
        rates[name] = args.readings / statistics.median(times)
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / rates['naive pandas, no validation']:.2f}x |")


if __name__ == "__main__":
    main()
