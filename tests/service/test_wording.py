"""Proposals in plain words: setpoint names become words with units, the optimizer's notes
become sentences (values typed here, the expected text written by hand)."""

from __future__ import annotations

from dcpue.optimizer.propose import Proposal
from dcpue.service.views import plain_words


def proposal(**kw) -> Proposal:
    base = dict(id="p1", ts_ms=0, site="hall-a", status="proposed",
                current={"chilled_water_temperature": 10.0, "supply_air_temperature": 20.0},
                proposed={"chilled_water_temperature": 11.0, "supply_air_temperature": 20.0},
                reason="predicted saving 25.0 kW (2.40 %)", saving_kw=25.0, saving_pct=2.4,
                predicted_inlet_c=25.12)
    return Proposal(**(base | kw))


def test_a_change_reads_as_a_sentence():
    assert plain_words(proposal()) == (
        "raise chilled water 10 -> 11 degC: saves about 25 kW (2.4 %), inlet stays <= 25.1 degC")


def test_keep_explains_why_in_words():
    keep = proposal(status="keep", proposed={"chilled_water_temperature": 10.0,
                                             "supply_air_temperature": 20.0},
                    reason="keep current: dry_bulb_c=-3.958 outside trained range "
                           "[-2.895, 12.39]; predicted saving 0.40 % below 1.0 %",
                    saving_kw=0.0, predicted_inlet_c=None)
    assert plain_words(keep) == (
        "keep the current setpoints: outdoor dry bulb -4.0 degC is outside what the model was "
        "trained on (-2.9 to 12.4 degC); the predicted saving (0.40 %) is below the 1 % worth "
        "a change")


def test_cooler_step_without_a_saving():
    cool = proposal(proposed={"chilled_water_temperature": 9.0, "supply_air_temperature": 19.0},
                    reason="predicted inlet 27.40 degC above 26.00: cool", saving_kw=-3.0,
                    predicted_inlet_c=25.9)
    assert plain_words(cool) == ("lower chilled water 10 -> 9 degC, lower supply air 20 -> 19 "
                                 "degC: predicted inlet 27.40 degC above 26.00: cool, inlet "
                                 "stays <= 25.9 degC")
