"""Shared sites for the twin tests (bundled examples, optionally with small overrides)."""

from __future__ import annotations

import tomllib

import pytest
from dcpue.config import Site, example_path, parse_site


def example(name: str, **twin: object) -> Site:
    """A bundled example site with ``[twin]`` keys overridden."""
    data = tomllib.loads(example_path(name).read_text())
    data["twin"] = {**data.get("twin", {}), **twin}
    return parse_site(data, name)


@pytest.fixture(scope="session")
def hall() -> Site:
    return example("single_hall")


@pytest.fixture(scope="session")
def campus() -> Site:
    return example("microgrid")
