"""`dcpue check-config` rejects what the daemon rejects or would misread, naming file, meter id,
field and reason, with a "did you mean" for near misses, every error at once; and `dcpue run`
refuses the same files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from dcpue.config import example_path

from dcpue.cli import main

HALL = example_path("single_hall").read_text()
MODBUS_POINT = 'points = [\n    { meter = "grid-main",'


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return str(path)


def add_meter(text: str, block: str) -> str:
    return text.replace("[collector.modbus]", block + "\n[collector.modbus]", 1)


def threshold(figure: str) -> str:
    return HALL.replace('figure = "pue.1h"\nabove', f'figure = "{figure}"\nabove', 1)


PDU = """[[meters]]
id = "pdu-a"
role = "it_load"
kind = "power"
unit = "kW"
it_category = "pdu_output"
"""

CASES = [
    pytest.param(lambda: HALL.replace(MODBUS_POINT, 'points = [\n    { meter = "grid-mian",', 1),
                 r"collector\.modbus\.devices\[[^]]+\]\.groups\[[^]]+\]\.points\[0\]\.meter: "
                 r"unknown meter 'grid-mian' \(did you mean 'grid-main'\?\)", id="modbus-meter"),
    pytest.param(lambda: add_meter(HALL, PDU),
                 r"calculator\.it_category: IT is metered at several Green Grid categories "
                 r"\(ups-out \(ups_output\), pdu-a \(pdu_output\)\); choose one", id="it-category"),
    pytest.param(lambda: threshold("pue.2h"),
                 r"service\.alerts\.thresholds\[PueHigh\]\.figure: 'pue\.2h': window '2h' is not "
                 r"computed .*\(did you mean 'pue\.1h'\?\)", id="window"),
    pytest.param(lambda: threshold("wue.1h"),
                 r"service\.alerts\.thresholds\[PueHigh\]\.figure: 'wue\.1h' is not computed for this site's meters",
                 id="figure-not-computed"),
    pytest.param(lambda: re.sub(r'role = "grid_import"', 'role = "other_load"', HALL, count=1),
                 r"meters: no meter with role grid_import", id="no-grid-meter"),
    pytest.param(lambda: HALL.replace('role = "chiller"', 'role = "chiler"', 1),
                 r"meters\[chiller-1\]\.role: Input should be .*\(did you mean 'chiller'\?\)",
                 id="role-typo"),
    pytest.param(lambda: HALL.replace('unit = "kWh"', 'unti = "kWh"', 1),
                 r"meters\[grid-main\]\.unti: Extra inputs are not permitted "
                 r"\(did you mean 'unit'\?\)", id="key-typo"),
]


@pytest.mark.parametrize(("make", "pattern"), CASES)
def test_each_case_fails_with_the_meter_and_field(tmp_path, capsys, make, pattern):
    path = write(tmp_path, make())
    assert main(["check-config", path]) == 2
    err = capsys.readouterr().err
    assert re.search(re.escape(path) + r": " + pattern, err), err


def test_every_error_at_once(tmp_path, capsys):
    text = HALL.replace('role = "chiller"', 'role = "chiler"', 1).replace(
        'unit = "kWh"', 'unti = "kWh"', 1).replace('timezone = "America/New_York"',
                                                   'timezone = "Mars/Olympus"')
    path = write(tmp_path, text)
    assert main(["check-config", path]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4, lines  # the misspelt key is also a missing unit
    assert "more)" not in "".join(lines)
    assert {re.split(r": ", ln.removeprefix("dcpue: config error: "))[1] for ln in lines} == {
        "timezone", "meters[grid-main].unti", "meters[grid-main].unit", "meters[chiller-1].role"}


def test_site_and_startup_errors_together(tmp_path, capsys):
    text = add_meter(threshold("pue.2h"), PDU)
    path = write(tmp_path, text)
    assert main(["check-config", path]) == 2
    err = capsys.readouterr().err
    assert "calculator.it_category" in err and "thresholds[PueHigh]" in err


def test_warnings_do_not_fail(tmp_path, capsys):
    overlap = HALL.replace(
        MODBUS_POINT,
        'points = [\n    { meter = "ups-out", address = 1, type = "float32" },\n'
        '    { meter = "grid-main",', 1)
    path = write(tmp_path, overlap)
    assert main(["check-config", path]) == 0
    out, err = capsys.readouterr()
    assert "1 warning" not in out and "warning(s)" in out
    assert re.search(r"collector\.modbus\.devices\[[^]]+\]: holding registers of meter "
                     r"'grid-main' \(0\.\.3\) and 'ups-out' \(from 1\) overlap", err), err
    assert "meters[ups-out]: fed by two sources" in err
    assert "energy counters without a plausibility bound" in err and "chiller-1" in err


def test_examples_pass():
    for name in ("single_hall", "microgrid"):
        assert main(["check-config", str(example_path(name))]) == 0


def test_dcpue_run_refuses_what_check_config_refuses(tmp_path):
    path = write(tmp_path, threshold("pue.2h"))
    proc = subprocess.run([sys.executable, "-m", "dcpue", "run", "--config", path],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "thresholds[PueHigh].figure: 'pue.2h'" in proc.stderr
    assert "Traceback" not in proc.stderr
