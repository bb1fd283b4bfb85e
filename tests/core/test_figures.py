from dcpue.core.figures import Figure

T0 = 1_672_531_200_000  # 2023-01-01T00:00:00Z


def test_explain_expands_inputs_factor_and_window():
    mwh = Figure("green_power", 604_277.1, "MWh", meters=("ppa-1",))
    avoided = Figure(
        "avoided_green_power", 344_619.2, "tCO2", formula="MWh x factor",
        start_ms=T0, end_ms=T0 + 86_400_000, coverage=1.0, inputs=(mwh,),
        factor=0.5703, factor_unit="tCO2/MWh", factor_source="grid average",
    )
    tree = avoided.explain()
    assert tree["factor"] == {"value": 0.5703, "unit": "tCO2/MWh", "source": "grid average"}
    assert tree["window"]["from"] == "2023-01-01T00:00:00+00:00"
    assert tree["inputs"][0]["meters"] == ["ppa-1"]


def test_insufficient_figure_says_so():
    fig = Figure("pue_1h", None, "1", coverage=0.4)
    assert not fig.sufficient
    assert fig.explain()["status"] == "insufficient data"


def test_lazy_inputs_are_built_once_and_only_when_read():
    """An audit trail nobody reads is never built (the daemon's per-minute figures); read, it
    is built once and behaves, compares and pickles as the tuple it is."""
    import pickle

    from dcpue.core.figures import Figure, LazyInputs

    calls = []
    child = Figure("it", 100.0, "kWh")

    def make() -> tuple[Figure, ...]:
        calls.append(1)
        return (child,)

    fig = Figure("pue", 1.3, "1", inputs=LazyInputs(make))
    assert fig.value == 1.3 and calls == []
    assert fig.explain()["inputs"] == [child.explain()] and calls == [1]
    assert list(fig.inputs) == [child] and fig.inputs[0] is child and len(fig.inputs) == 1
    assert fig.inputs == (child,) and calls == [1]
    assert pickle.loads(pickle.dumps(fig)).inputs == (child,)
