"""The hourly-factor CSV is parsed once per file version (path, mtime, size).

Declared: two CSV versions; computed: what :func:`dcpue.config.factors.load_hourly_factors`
returns and how often it parses (counted through the module's parser).
"""

import os

import numpy as np
import pytest
from dcpue.config import factors


@pytest.fixture
def parses(monkeypatch):
    calls = []
    real = factors._parse

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(factors, "_parse", counting)
    return calls


def test_unchanged_file_is_read_once_and_a_changed_one_again(tmp_path, parses):
    path = tmp_path / "f.csv"
    path.write_text("timestamp,t_per_mwh\n2023-01-01T00:00:00Z,0.5\n")
    first = factors.load_hourly_factors(path, "grid operator")
    again = factors.load_hourly_factors(tmp_path / "." / "f.csv", "other label")
    assert len(parses) == 1
    assert again.source == "other label" and again.t_per_mwh.tolist() == [0.5]
    path.write_text("timestamp,t_per_mwh\n2023-01-01T00:00:00Z,0.25\n")  # same size
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    changed = factors.load_hourly_factors(path, "grid operator")
    assert len(parses) == 2
    assert changed.t_per_mwh.tolist() == [0.25] and first.t_per_mwh.tolist() == [0.5]
    path.write_text("timestamp,t_per_mwh\n2023-01-01T00:00:00Z,0.125\n")  # other size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same mtime
    assert factors.load_hourly_factors(path, "x").t_per_mwh.tolist() == [0.125]
    assert len(parses) == 3


def test_cached_arrays_are_read_only(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("timestamp,t_per_mwh\n2023-01-01T00:00:00Z,0.5\n")
    got = factors.load_hourly_factors(path, "x")
    with pytest.raises(ValueError):
        got.t_per_mwh[0] = 9.0


def test_per_hour_falls_back_to_the_site_factor():
    series = factors.HourlyFactors(np.array([0, 3_600_000]), np.array([0.3, 0.6]), "s")
    values, found = factors.per_hour(series, np.array([3_600_000, 7_200_000]), 0.5)
    assert values.tolist() == [0.6, 0.5] and found.tolist() == [True, False]
    assert factors.per_hour(None, np.array([0]), 0.5)[0].tolist() == [0.5]
