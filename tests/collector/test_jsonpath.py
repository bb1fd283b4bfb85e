import pytest
from dcpue.core.jsonpath import JsonPathError, compile_path, resolve

DOC = {"data": {"pdu": [{"kw": 1.0}, {"kw": 2.0}, {"kw": 3.5}], "a b": {"x.y": 7}}}


def test_compiles_members_indices_and_quoted_keys():
    assert compile_path("$.data.pdu[2].kw") == ("data", "pdu", 2, "kw")
    assert compile_path("$['a b'][\"x.y\"]") == ("a b", "x.y")
    assert compile_path("$") == ()
    assert compile_path("$.list[-1]") == ("list", -1)


def test_resolves_values():
    assert resolve(DOC, compile_path("$.data.pdu[2].kw")) == 3.5
    assert resolve(DOC, compile_path("$.data.pdu[-3].kw")) == 1.0
    assert resolve(DOC, compile_path("$.data['a b']['x.y']")) == 7
    assert resolve(DOC, ()) is DOC


@pytest.mark.parametrize(
    "path", ["$.data.pdu[3].kw", "$.data.pdu[-4]", "$.nope", "$.data.pdu.kw", "$.data.pdu[0].kw.x"]
)
def test_missing_steps_raise_lookup_error(path):
    with pytest.raises(LookupError):
        resolve(DOC, compile_path(path))


@pytest.mark.parametrize("path", ["data.pdu", "$.data[", "$..kw", "$.data[*]", "$.a b"])
def test_bad_paths_are_refused(path):
    with pytest.raises(JsonPathError):
        compile_path(path)
