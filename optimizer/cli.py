"""``dcpue optimize ...``: train, propose, list, apply, override, M&V and twin evaluation."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # scikit-learn, pandas and DuckDB load inside the commands
    from dcpue.config import Site
    from dcpue.core.store import Store


def _setpoint(text: str) -> str:
    """A setpoint name, or ``<name>@<setpoint meter id>`` for one instance (the meter is
    checked against the site by the command)."""
    from dcpue.config import SetpointName

    names = [n.value for n in SetpointName]
    name, at, meter = text.partition("@")
    if name not in names or (at and not meter):
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(names)}, or NAME@METER_ID for "
            "one instance)")
    return text


def _moment(text: str) -> datetime:
    """ISO date or date-time; naive values are UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _site_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="site TOML file")
    p.add_argument("--store", default=None, help="DuckDB store (default: [store] path)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dcpue optimize`` and its sub-commands."""
    top = sub.add_parser("optimize", help="cooling optimizer: models, proposals, M&V, evaluation")
    cmds = top.add_subparsers(dest="optimize_command", required=True, metavar="ACTION")

    p = cmds.add_parser("train", help="train the plant model from the store")
    _site_args(p)
    p.add_argument("--start", type=_moment, help="first instant (ISO; default: store start)")
    p.add_argument("--end", type=_moment, help="end instant, exclusive (default: store end)")
    p.add_argument("--kind", choices=("gbr", "ridge"), help="default: [optimizer] model_kind")
    p.add_argument("--out", help="model file (default: beside the store)")
    p.set_defaults(func=_train)

    p = cmds.add_parser("propose", help="propose setpoints for the current plant state")
    _site_args(p)
    p.add_argument("--model", help="model file (default: beside the store)")
    p.add_argument("--publish", action="store_true", help="publish on [optimizer.mqtt]")
    p.set_defaults(func=_propose)

    p = cmds.add_parser("proposals", help="list stored proposals, newest first")
    _site_args(p)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--status", help="only proposals with this status")
    p.add_argument("--json", action="store_true", help="full JSON, one proposal per line")
    p.set_defaults(func=_proposals)

    p = cmds.add_parser("apply", help="accept a proposal and write back enabled setpoints")
    _site_args(p)
    p.add_argument("--id", help="proposal id (default: the newest)")
    p.set_defaults(func=_apply)

    p = cmds.add_parser("override", help="operator override of a setpoint (always wins)")
    _site_args(p)
    p.add_argument("setpoint", nargs="?", type=_setpoint, metavar="SETPOINT",
                   help="supply_air_temperature, ... (see [optimizer] setpoints), or "
                        "NAME@METER_ID for one instance, e.g. supply_air_temperature@ahu-1")
    p.add_argument("value", nargs="?", help="a value to hold, 'hold' (keep as is) or 'clear'")
    p.add_argument("--note", default="", help="why (kept with the override)")
    p.set_defaults(func=_override)

    p = cmds.add_parser("mv", help="M&V: avoided energy of a measure (ASHRAE Guideline 14)")
    _site_args(p)
    p.add_argument("--measure", required=True, help="name of the measure")
    p.add_argument("--pre", nargs=2, type=_moment, required=True, metavar=("START", "END"))
    p.add_argument("--post", nargs=2, type=_moment, required=True, metavar=("START", "END"))
    p.set_defaults(func=_mv)

    p = cmds.add_parser("evaluate", help="plant evaluation: fixed vs loop vs oracle")
    p.add_argument("--config", required=True, help="site TOML file")
    p.add_argument("--days", type=float, required=True)
    p.add_argument("--start", type=_moment, help="default: [twin] start")
    p.add_argument("--explore-days", type=float, default=14.0)
    p.add_argument("--baseline-days", type=float,
                   help="M&V baseline at the conventional setpoints before the exploration "
                        "(default: [optimizer.mv] min_baseline_days; 0: no M&V)")
    p.add_argument("--oracle-points", type=int, default=5,
                   help="EnergyPlus: grid values per lever for the fixed-setpoint oracle")
    p.set_defaults(func=_evaluate)


def _open(args: argparse.Namespace) -> tuple[Site, Store]:
    """The site and its store; ``--store`` replaces ``[store] path`` (the default model
    location follows it)."""
    from dcpue.config import load_site
    from dcpue.core.store import Store

    site = load_site(args.config)
    if args.store:
        site.store.path = Path(args.store)
    return site, Store(site.store.path)


def _train(args: argparse.Namespace) -> int:
    from dcpue.core.readings import datetime_to_ms
    from dcpue.optimizer.frames import FrameError, build_frame
    from dcpue.optimizer.models import save_model, train
    from dcpue.optimizer.propose import model_path

    site, store = _open(args)
    with store:
        span = store.time_range()
        if span is None:
            print("dcpue optimize train: the store holds no readings")
            return 1
        start = datetime_to_ms(args.start) if args.start else span[0]
        end = datetime_to_ms(args.end) if args.end else span[1] + 1
        try:
            frame = build_frame(store, site, start, end)
        except FrameError as exc:
            print(f"dcpue optimize train: {exc}")
            return 1
    cfg = site.optimizer
    try:
        model = train(frame, args.kind or cfg.model_kind, cfg.target, cfg.cv_splits)
    except ValueError as exc:
        print(f"dcpue optimize train: {exc}")
        return 1
    path = save_model(model, args.out or model_path(site))
    print(json.dumps({"model": str(path), "dropped_rows": frame.dropped_rows,
                      "total_rows": frame.total_rows, **model.summary()}, indent=2))
    return 0


def _propose(args: argparse.Namespace) -> int:
    import asyncio

    from dcpue.optimizer.frames import FrameError
    from dcpue.optimizer.models import ModelError, load_model
    from dcpue.optimizer.propose import (
        ProposalLog,
        current_state,
        model_path,
        propose,
        publish_proposal,
    )
    from dcpue.optimizer.writeback import Overrides

    site, store = _open(args)
    try:
        model = load_model(args.model or model_path(site))
    except ModelError as exc:
        print(f"dcpue optimize propose: {exc}")
        return 1
    with store:
        try:
            state = current_state(store, site)
        except FrameError as exc:
            print(f"dcpue optimize propose: {exc}")
            return 1
        fixed = Overrides(store).fixed_values(state.setpoints, state.instances)
        proposal = propose(model, state, site.optimizer, site=site.id, fixed=fixed)
        ProposalLog(store).save(proposal)
    if args.publish:
        mqtt = site.optimizer.mqtt
        asyncio.run(publish_proposal(mqtt, mqtt.proposal_topic, proposal, qos=mqtt.qos))
    print(proposal.to_json())
    return 0


def _proposals(args: argparse.Namespace) -> int:
    from dcpue.optimizer.proposals import ProposalLog, describe  # light: no scikit-learn

    _, store = _open(args)
    with store:
        rows = ProposalLog(store).list(args.limit, args.status)
    for p in rows:
        print(p.to_json() if args.json else json.dumps(describe(p)))
    return 0


def _apply(args: argparse.Namespace) -> int:
    import asyncio

    from dcpue.optimizer.propose import ProposalLog
    from dcpue.optimizer.writeback import WritebackRefused, apply_proposal

    site, store = _open(args)
    with store:
        log = ProposalLog(store)
        proposal = log.get(args.id) if args.id else next(iter(log.list(1)), None)
        if proposal is None:
            print("dcpue optimize apply: no such proposal")
            return 1
        try:
            writes = asyncio.run(apply_proposal(store, site.optimizer, proposal))
        except WritebackRefused as exc:
            print(f"dcpue optimize apply: refused: {exc}")
            return 1
    for w in writes:
        print(f"{w.key} = {w.value:g} ({w.source})")
    print(f"proposal {proposal.id}: {'applied' if writes else 'accepted (no write-back enabled)'}")
    return 0


def _override(args: argparse.Namespace) -> int:
    from dcpue.config import MeterRole
    from dcpue.optimizer.propose import setpoint_bounds
    from dcpue.optimizer.writeback import Overrides, WritebackRefused, split_key

    site, store = _open(args)
    with store:
        overrides = Overrides(store)
        if args.setpoint is None:
            for o in overrides.all().values():
                held = "hold" if o.value is None else f"{o.value:g}"
                print(f"{o.key} = {held} {o.note}".rstrip())
            return 0
        key = args.setpoint
        if args.value in (None, "clear"):
            print(f"{key}: override {'cleared' if overrides.clear(key) else 'not set'}")
            return 0
        name, instance = split_key(key)
        metered = [m.id for m in site.meters_with(MeterRole.SETPOINT) if m.setpoint is name]
        if instance is not None and instance not in metered:
            print(f"dcpue optimize override: {instance!r} is not a setpoint meter of {name.value}"
                  f" (its setpoint meters: {', '.join(metered) or 'none'})")
            return 1
        if instance is not None and len(metered) < 2:  # one instance is the type's one lever
            print(f"dcpue optimize override: {name.value} has one setpoint meter: override "
                  f"{name.value} itself")
            return 1
        try:
            value = None if args.value == "hold" else float(args.value)
            overrides.set(key, value, setpoint_bounds(site.optimizer)[name.value], args.note)
        except (ValueError, WritebackRefused) as exc:
            print(f"dcpue optimize override: {exc}")
            return 1
    print(f"{key}: override {args.value}")
    return 0


def _mv(args: argparse.Namespace) -> int:
    from dcpue.core.readings import datetime_to_ms
    from dcpue.optimizer.frames import build_frame
    from dcpue.optimizer.models import ModelError, load_model
    from dcpue.optimizer.mv import measure_savings, record_savings
    from dcpue.optimizer.propose import model_path

    site, store = _open(args)
    cfg = site.optimizer.mv
    try:  # the plant model knows how IT power responds to inlet temperature, if it does
        response = load_model(model_path(site)).it_response
    except ModelError:
        response = None
    with store:
        pre, post = (
            build_frame(store, site, datetime_to_ms(a), datetime_to_ms(b), step_s=cfg.step_s,
                        utility=True)
            for a, b in (args.pre, args.post)
        )
        result = measure_savings(pre, post, args.measure, target=cfg.target, settings=cfg,
                                 it_response=response)
        record_savings(store, result)
    print(json.dumps({
        "measure": result.measure, "status": result.status, "reason": result.reason,
        "savings_kwh": round(result.savings_kwh, 1),
        "uncertainty_kwh": round(result.uncertainty_kwh, 1),
        "confidence": result.confidence, "fsu_pct": round(result.fsu_pct, 1),
        "basis": result.basis, "ipmvp_option": result.ipmvp_option,
        "it_reference_inlet_c": result.it_ref_inlet_c,
        "baseline_kwh": round(result.baseline_kwh, 1),
        "actual_kwh": round(result.actual_kwh, 1), "cvrmse_pct": round(result.cvrmse_pct, 3),
        "nmbe_pct": round(result.nmbe_pct, 4), "gates": result.gates,
        "baseline_rows": result.n, "post_rows": result.m,
        "dropped_rows": pre.dropped_rows + post.dropped_rows,
    }, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dcpue.config import ConfigError, load_site
    from dcpue.optimizer.evaluate import (  # the twin is only needed here
        EvaluationError,
        run_evaluation,
        site_plant,
    )

    site = load_site(args.config)
    baseline = args.baseline_days
    try:
        plant = site_plant(site, oracle_points=args.oracle_points)
        result = run_evaluation(
            site, args.days, args.start, explore_days=args.explore_days, plant=plant,
            baseline_days=site.optimizer.mv.min_baseline_days if baseline is None else baseline,
            progress=lambda msg: print(f"... {msg}", flush=True),
        )
    except (EvaluationError, ConfigError, ValueError) as exc:  # e.g. too few rows to train
        print(f"dcpue optimize evaluate: {exc}")
        return 1
    print(result.report())
    return 0
