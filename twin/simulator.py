"""The digital twin: weather + IT load + plant physics + microgrid -> meter readings.

Closed loop: assign :attr:`Twin.setpoints`, call :meth:`Twin.step`. Fast-forward:
:meth:`Twin.run` yields :class:`ReadingColumns` chunks, vectorised over time. Both advance the
same clock, counters and battery, so they can be mixed.

Energy balance (exact up to float rounding) at every step, in kW:
grid import - export + PV + battery discharge - battery charge
= IT + cooling + UPS loss + lighting + other loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
from dcpue.config import MeterRole, Site
from dcpue.config.twin import BatterySettings
from dcpue.core.readings import Reading, ReadingColumns, datetime_to_ms
from dcpue.twin.meters import MeterBank
from dcpue.twin.plant import Conditions, PlantParams, PlantResult, Setpoints, evaluate
from dcpue.twin.profiles import it_load_kw, local_time, other_load_kw
from dcpue.twin.solar import pv_profile
from dcpue.twin.weather import load_weather

_SETPOINT_FIELDS = {
    "supply_air_temperature": "supply_air_c",
    "chilled_water_temperature": "chilled_water_c",
    "crah_fan_speed": "crah_fan_speed_pct",
    "pump_frequency": "pump_frequency_hz",
    "running_units": "running_units",
}


@dataclass
class TwinStep:
    """One closed-loop step: powers in kW (``battery_kw`` > 0 discharging, < 0 charging)."""

    ts_ms: int
    conditions: Conditions
    result: PlantResult
    pv_kw: float
    battery_kw: float
    readings: list[Reading]


@dataclass
class Flows:
    """Per-step flows of a stretch of simulated time (arrays, kW unless stated)."""

    ts_ms: np.ndarray
    conditions: Conditions
    setpoints: Setpoints
    result: PlantResult
    other_kw: np.ndarray
    pv_kw: np.ndarray
    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    soc_pct: np.ndarray
    import_kw: np.ndarray
    export_kw: np.ndarray
    ghi_w_m2: np.ndarray

    def by_flow_name(self) -> dict[str, np.ndarray]:
        """Arrays keyed like :func:`dcpue.twin.meters.flow_name`, in canonical units."""
        r, c, n = self.result, self.conditions, len(self.ts_ms)
        out = {
            MeterRole.GRID_IMPORT: self.import_kw, MeterRole.GRID_EXPORT: self.export_kw,
            MeterRole.IT_LOAD: r.it_kw, MeterRole.CHILLER: r.chiller_kw, MeterRole.CRAH: r.crah_kw,
            MeterRole.PUMP: r.pump_kw, MeterRole.COOLING_TOWER: r.tower_kw,
            MeterRole.LIGHTING: r.lighting_kw, MeterRole.UPS_LOSS: r.ups_loss_kw,
            MeterRole.OTHER_LOAD: self.other_kw, MeterRole.PV_GENERATION: self.pv_kw,
            MeterRole.BATTERY_CHARGE: self.charge_kw,
            MeterRole.BATTERY_DISCHARGE: self.discharge_kw, MeterRole.BATTERY_SOC: self.soc_pct,
            MeterRole.WATER: r.makeup_water_m3_h, MeterRole.OUTDOOR_TEMPERATURE: c.dry_bulb_c,
            MeterRole.OUTDOOR_HUMIDITY: c.relative_humidity_pct,
            MeterRole.IRRADIANCE: self.ghi_w_m2, MeterRole.RACK_INLET_TEMPERATURE: r.rack_inlet_max_c,
        }
        named = {str(k): np.broadcast_to(np.asarray(v, dtype=float), (n,)) for k, v in out.items()}
        for name, attr in _SETPOINT_FIELDS.items():
            value = np.asarray(getattr(self.setpoints, attr), dtype=float)
            named[f"setpoint:{name}"] = np.broadcast_to(value, (n,))
        return named


class Twin:
    """A simulated site: the meters of ``site`` fed by physics, deterministic for a seed.

    ``start`` defaults to ``[twin] start`` (1 January 2023 00:00 UTC); ``seed`` to ``[twin] seed``.
    """

    def __init__(self, site: Site, *, seed: int | None = None, start: datetime | None = None) -> None:
        tw = site.twin
        self.site = site
        self.params = PlantParams.from_settings(tw)
        self.seed = tw.seed if seed is None else seed
        self.step_s = tw.step_s
        self.start_ms = datetime_to_ms(start or tw.start)
        self.setpoints: Setpoints = replace(self.params.default_setpoints)
        self.chiller_degradation = 0.0
        self.weather = load_weather(tw.weather)
        roles = {m.role for m in site.meters}
        self.has_other = MeterRole.OTHER_LOAD in roles
        self.battery: BatterySettings | None = (
            tw.battery
            if roles & {MeterRole.BATTERY_CHARGE, MeterRole.BATTERY_DISCHARGE, MeterRole.BATTERY_SOC}
            else None
        )
        self.pv = (
            pv_profile(
                self.weather, tw.pv, site.latitude, site.longitude, site.altitude_m,
                datetime.fromtimestamp(self.start_ms / 1000, tz=UTC).year,
            )
            if MeterRole.PV_GENERATION in roles
            else None
        )
        self.meters = MeterBank(site, self.seed, self.step_s)
        self.soc_kwh = tw.battery.energy_kwh * tw.battery.initial_soc_pct / 100.0
        self.next_step = 0  # index of the next step; its time is start + index x step

    # -- the world ------------------------------------------------------------------------------
    @property
    def now_ms(self) -> int:
        """Timestamp of the next step, UTC epoch ms."""
        return self.start_ms + self.next_step * self.step_s * 1000

    @property
    def it_bounds_kw(self) -> tuple[float, float]:
        """The IT-load profile's (lowest, highest) kW."""
        tw = self.site.twin
        return tw.trough_factor * tw.nominal_it_kw, tw.peak_factor * tw.nominal_it_kw

    def conditions(self, ts_ms: np.ndarray) -> Conditions:
        """Weather and IT load at UTC epoch ms ``ts_ms`` (pure function of seed and time)."""
        ts = np.atleast_1d(np.asarray(ts_ms, dtype=np.int64))
        hour, weekday = local_time(ts, self.site.timezone)
        w = self.weather
        return Conditions(
            it_kw=it_load_kw(self.site.twin, self.seed, ts, hour, weekday),
            dry_bulb_c=w.at("dry_bulb_c", ts),
            relative_humidity_pct=w.at("relative_humidity_pct", ts),
            pressure_pa=w.at("pressure_pa", ts),
            wet_bulb_c=w.at("wet_bulb_c", ts),
        )

    # -- advancing --------------------------------------------------------------------------
    def step(self) -> TwinStep:
        """Advance one step with the current setpoints and fault; return it with its readings."""
        flows, cols = self._advance(1, self.setpoints)
        return TwinStep(
            ts_ms=int(flows.ts_ms[0]),
            conditions=flows.conditions.at(0),
            result=PlantResult(
                **{k: np.asarray(v).reshape(-1)[0].item() for k, v in vars(flows.result).items()}
            ),
            pv_kw=float(flows.pv_kw[0]),
            battery_kw=float(flows.discharge_kw[0] - flows.charge_kw[0]),
            readings=cols.to_readings(),
        )

    def run(
        self,
        days: float,
        *,
        setpoints: Setpoints | None = None,
        chunk_days: float = 30.0,
        progress: Callable[[int], object] | None = None,
    ) -> Iterator[ReadingColumns]:
        """Fast-forward ``days``, yielding the readings chunk by chunk (``chunk_days`` each).

        ``setpoints`` (default: the current ones) may hold arrays with one value per step of the
        run. ``progress`` is called with the number of steps done in each chunk.
        """
        total = round(days * 86400 / self.step_s)
        per_chunk = max(1, round(chunk_days * 86400 / self.step_s))
        sp = setpoints or self.setpoints
        for name, value in vars(sp).items():
            if np.ndim(value) and len(value) != total:
                raise ValueError(f"setpoints.{name} has {len(value)} values for {total} steps")
        for i0 in range(0, total, per_chunk):
            n = min(per_chunk, total - i0)
            _, cols = self._advance(n, sp.at(slice(i0, i0 + n)))
            if progress is not None:
                progress(n)
            yield cols

    def simulate(self, n: int, setpoints: Setpoints | None = None) -> Flows:
        """Advance ``n`` steps and return the flows (no readings; counters still advance)."""
        return self._advance(n, setpoints or self.setpoints)[0]

    def _advance(self, n: int, sp: Setpoints) -> tuple[Flows, ReadingColumns]:
        k0 = self.next_step
        ts = self.now_ms + np.arange(n, dtype=np.int64) * (self.step_s * 1000)
        hour, weekday = local_time(ts, self.site.timezone)
        cond = self.conditions(ts)
        result = evaluate(cond, sp, self.params, chiller_degradation=self.chiller_degradation)
        other = (
            other_load_kw(self.site.twin, self.seed, ts, hour, weekday)
            if self.has_other else np.zeros(n)
        )
        pv = self.pv.ac_at(ts) if self.pv is not None else np.zeros(n)
        load = np.broadcast_to(result.facility_kw, (n,)) + other
        charge, discharge, soc = self._dispatch(hour, pv, load)
        net = load - pv - discharge + charge
        flows = Flows(
            ts_ms=ts, conditions=cond, setpoints=sp, result=result, other_kw=other, pv_kw=pv,
            charge_kw=charge, discharge_kw=discharge, soc_pct=soc,
            import_kw=np.maximum(net, 0.0), export_kw=np.maximum(-net, 0.0),
            ghi_w_m2=self.weather.at("ghi", ts),
        )
        cols = self.meters.columns(k0, ts, flows.by_flow_name())
        self.next_step += n
        return flows, cols

    def _dispatch(
        self, hour: np.ndarray, pv: np.ndarray, load: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rule dispatch: (charge kW, discharge kW, state of charge % at the step's end).

        Charge from PV surplus (so nothing is exported while there is room), else from the grid
        in the charge hours; discharge in the evening-peak hours, never more than the load
        left after PV (the battery does not export). Efficiency split evenly (sqrt of round trip).
        """
        n = len(load)
        b = self.battery
        if b is None:
            return np.zeros(n), np.zeros(n), np.zeros(n)
        h = self.step_s / 3600.0
        eta = b.round_trip_efficiency**0.5
        lo, hi = b.energy_kwh * b.min_soc_pct / 100.0, b.energy_kwh * b.max_soc_pct / 100.0
        window_c = (hour >= b.charge_hours[0]) & (hour < b.charge_hours[1])
        window_d = (hour >= b.discharge_hours[0]) & (hour < b.discharge_hours[1])
        residual = (load - pv).tolist()
        charge, discharge, soc_out = [0.0] * n, [0.0] * n, [0.0] * n
        soc, pmax = self.soc_kwh, b.power_kw
        for i, (res, wc, wd) in enumerate(zip(residual, window_c.tolist(), window_d.tolist(), strict=True)):
            if res < 0.0 or wc:
                c = min(-res if res < 0.0 else pmax, pmax, (hi - soc) / (eta * h))
                if c > 0.0:
                    charge[i] = c
                    soc += c * eta * h
            elif wd:
                d = min(pmax, (soc - lo) * eta / h, res)
                if d > 0.0:
                    discharge[i] = d
                    soc -= d / eta * h
            soc_out[i] = soc
        self.soc_kwh = soc
        return np.array(charge), np.array(discharge), np.array(soc_out) / b.energy_kwh * 100.0
