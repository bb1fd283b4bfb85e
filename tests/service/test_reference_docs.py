"""docs/reference/ is current with the code: the meter page lists every role with examples
that validate, and the API page every route the app serves (OpenAPI and routes agree)."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

from dcpue.config.topology import Meter, MeterRole
from dcpue.service.api import OPENAPI, create_app
from starlette.routing import Route

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"


def generator():
    spec = importlib.util.spec_from_file_location("generate", REFERENCE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pages_are_current():
    gen = generator()
    for name, build in gen.PAGES.items():
        assert (REFERENCE / name).read_text() == build(), (
            f"docs/reference/{name} is stale: run python docs/reference/generate.py")


def test_every_role_listed_with_examples_that_validate():
    text = (REFERENCE / "meters.md").read_text()
    for role in MeterRole:
        assert f"| `{role}` |" in text, role
    examples = re.findall(r"\| (`\[\[meters\]\]`(?:<br>`[^`]*`)+) \|", text)
    assert len(examples) >= len(MeterRole)
    for ex in examples:
        toml = "\n".join(re.findall(r"`([^`]*)`", ex))
        (meter,) = tomllib.loads(toml)["meters"]
        Meter(**meter)


def test_openapi_lists_every_route_of_the_app(tmp_path):
    import dataclasses

    from dcpue.config import example_path, load_site
    from dcpue.core.store import Store
    from dcpue.service.daemon import Runtime

    with Store(tmp_path / "s.duckdb") as store:
        runtime = Runtime(load_site(example_path("single_hall")), store, lambda: 0)
        app = create_app(dataclasses.replace(runtime.api_sources(), token=None))
    served = {re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", r.path) for r in app.routes
              if isinstance(r, Route)} - {"/favicon.ico"}
    documented = set(OPENAPI["paths"])
    assert served == documented
    for path, ops in OPENAPI["paths"].items():
        for op in ops.values():
            assert op["x-scope"] in ("read", "operator"), path
            assert "200" in op["responses"]
