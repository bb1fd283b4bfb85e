"""Site files: examples validate; broken files fail with one line naming file and field."""

import subprocess
import sys
import tomllib

import pytest
from dcpue.config import ConfigError, MeterRole, example_path, load_site

from dcpue.cli import main


@pytest.mark.parametrize("name", ["single_hall", "microgrid"])
def test_examples_are_valid(name):
    site = load_site(example_path(name))
    assert site.grid.emission_factor_t_per_mwh == 0.5703
    assert site.meters_with(MeterRole.IT_LOAD)[0].it_category is not None


def write_broken(tmp_path, mutate) -> str:
    data = tomllib.loads(example_path("single_hall").read_text())
    mutate(data)
    lines = [f"{k} = {v!r}".replace("'", '"') for k, v in data.items() if not isinstance(v, dict | list)]
    lines.append(
        "[grid]\nemission_factor_t_per_mwh = 0.5\nsource = \"test\"\n"
    )
    for m in data["meters"]:
        lines.append("[[meters]]")
        lines += [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in m.items()]
    path = tmp_path / "broken.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda d: d["meters"][2].update(role="flux_capacitor"), "meters[ups-loss].role", "Input should be"),
        (lambda d: d["meters"][3].update(id="ups-out"), "meters", "duplicate meter id ups-out"),
        (lambda d: d["meters"][4].pop("unit"), "meters[crah-fans].unit", "Field required"),
        (lambda d: d["meters"][1].pop("it_category"), "meters[ups-out]", "it_category is required"),
        (lambda d: d["meters"][5].update(unit="degC"), "meters[pumps]", "does not measure energy"),
        (lambda d: d.update(timezone="Mars/Olympus"), "timezone", "unknown IANA time zone"),
    ],
)
def test_broken_config_names_file_field_and_reason(tmp_path, capsys, mutate, field, reason):
    path = write_broken(tmp_path, mutate)
    with pytest.raises(ConfigError) as info:
        load_site(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}")
    assert reason in message
    assert "\n" not in message
    assert main(["check-config", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and path in err


def test_cli_exit_code_two_from_a_real_process(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('id = "x"\nlatitude = 1\nlongitude = 2\n')
    proc = subprocess.run(
        [sys.executable, "-m", "dcpue", "check-config", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert f"{path}: grid: Field required" in proc.stderr


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_site(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("id = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_site(bad)
