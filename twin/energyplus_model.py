"""The data-hall model dcpue generates for EnergyPlus (epJSON), sized from the site file.

One adiabatic-floored box zone (lit at ``lighting_fraction`` of nominal IT) holds air-cooled IT equipment (``ElectricEquipment:ITE:AirCooled``:
CPU power and server airflow rise with inlet temperature, UPS losses metered as ``ITE-UPS``). A
constant-volume CRAH air loop (air-side economizer, blow-through fan, chilled-water coil held
at the supply-air setpoint, its surface wet where it is below the air's dew point) feeds it
through one terminal; the ITE inlet is the supply air plus a recirculated share of the room air. A chilled-water loop (variable-speed pump, water-cooled EIR chiller held
at the chilled-water setpoint) serves the coil and a condenser loop (constant-speed pump, single-
speed tower holding wet bulb + approach) serves the chiller. Every size is fixed from
``nominal_it_kw`` (no sizing run), so a run takes only the weather file.

Pure: :func:`hall_model` returns a dict; writing and running it is :mod:`dcpue.twin.energyplus`.
Object and field names follow the EnergyPlus Input Output Reference (epJSON schema, v25).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

from dcpue.config.twin import HallDesign

#: Names of the objects the default mapping and the actuators refer to.
ZONE = "Data Hall"
ITE = "Data Hall ITE"
SAT_SCHEDULE = "Supply Air Setpoint"
CHW_SCHEDULE = "Chilled Water Setpoint"
_ALWAYS = "Always On"
_RHO_AIR, _CP_AIR = 1.2, 1006.0  # kg/m3, J/(kg K)
_RHO_W, _CP_W = 1000.0, 4186.0  # kg/m3, J/(kg K)


@dataclass(frozen=True)
class Location:
    """The LOCATION line of an EPW file: degrees, standard-time offset in h, elevation in m."""

    city: str
    latitude: float
    longitude: float
    time_zone_h: float
    elevation_m: float

    @classmethod
    def from_epw(cls, header: str) -> Location:
        f = header.strip().split(",")
        if len(f) < 10 or f[0].upper() != "LOCATION":
            raise ValueError(f"not an EPW LOCATION line: {header[:60]!r}")
        return cls(f[1], float(f[6]), float(f[7]), float(f[8]), float(f[9]))


def _schedule(value: float | list[tuple[int, float]]) -> dict:
    """Schedule:Compact: one value all year, or ``[(until_hour, value), ...]`` every day."""
    hours = [(24, value)] if isinstance(value, float | int) else value
    data = ["Through: 12/31", "For: AllDays"]
    for hour, v in hours:
        data += [f"Until: {hour:02d}:00", float(v)]
    return {"schedule_type_limits_name": "Any Number", "data": [{"field": f} for f in data]}


def _nodes(name: str) -> tuple[str, str]:
    return f"{name} Inlet", f"{name} Outlet"


def _loop_side(m: dict, prefix: str, first: tuple[str, str, str, str] | None,
               parallel: list[tuple[str, str, str, str]]) -> tuple[str, str, str, str]:
    """Branches of one loop side: ``first`` (a pump, or a pipe if None) on the inlet branch,
    each of ``parallel`` and a bypass pipe between a splitter and a mixer, an outlet pipe.

    Components are ``(object type, name, inlet node, outlet node)``; their objects are the
    caller's. Returns (side inlet node, side outlet node, branch list, connector list).
    """
    pipe = m.setdefault("Pipe:Adiabatic", {})

    def pipe_of(name: str) -> tuple[str, str, str, str]:
        pipe[name] = dict(zip(("inlet_node_name", "outlet_node_name"), _nodes(name), strict=True))
        return ("Pipe:Adiabatic", name, *_nodes(name))

    first = first or pipe_of(f"{prefix} Inlet Pipe")
    branches = {f"{prefix} Inlet Branch": first}
    for comp in [*parallel, pipe_of(f"{prefix} Bypass")]:
        branches[f"{prefix} {comp[1]} Branch"] = comp
    branches[f"{prefix} Outlet Branch"] = pipe_of(f"{prefix} Outlet Pipe")
    for name, (kind, comp, inlet, outlet) in branches.items():
        m.setdefault("Branch", {})[name] = {"components": [{
            "component_object_type": kind, "component_name": comp,
            "component_inlet_node_name": inlet, "component_outlet_node_name": outlet,
        }]}
    names = list(branches)
    m.setdefault("BranchList", {})[f"{prefix} Branches"] = {
        "branches": [{"branch_name": b} for b in names]
    }
    middle = names[1:-1]
    m.setdefault("Connector:Splitter", {})[f"{prefix} Splitter"] = {
        "inlet_branch_name": names[0], "branches": [{"outlet_branch_name": b} for b in middle]
    }
    m.setdefault("Connector:Mixer", {})[f"{prefix} Mixer"] = {
        "outlet_branch_name": names[-1], "branches": [{"inlet_branch_name": b} for b in middle]
    }
    m.setdefault("ConnectorList", {})[f"{prefix} Connectors"] = {
        "connector_1_object_type": "Connector:Splitter", "connector_1_name": f"{prefix} Splitter",
        "connector_2_object_type": "Connector:Mixer", "connector_2_name": f"{prefix} Mixer",
    }
    return first[2], branches[names[-1]][3], f"{prefix} Branches", f"{prefix} Connectors"


def _envelope(m: dict, it_w: float, hall: HallDesign) -> None:
    """A square box of ``hall.floor_w_m2`` W of IT per m2, 4 m high, adiabatic floor."""
    side = (it_w / hall.floor_w_m2) ** 0.5
    h = 4.0
    m["Material:NoMass"] = {"Envelope Insulation": {
        "roughness": "MediumRough", "thermal_resistance": hall.envelope_r_m2k_w,
    }}
    m["Construction"] = {"Envelope": {"outside_layer": "Envelope Insulation"}}
    m["Zone"] = {ZONE: {}}
    corners = [(0, 0), (side, 0), (side, side), (0, side)]
    surfaces = {}
    for i, name in enumerate(("South", "East", "North", "West")):
        (x0, y0), (x1, y1) = corners[i], corners[(i + 1) % 4]
        surfaces[f"{name} Wall"] = ("Wall", "Outdoors",
                                    [(x0, y0, h), (x0, y0, 0), (x1, y1, 0), (x1, y1, h)])
    surfaces["Roof"] = ("Roof", "Outdoors", [(0, side, h), (0, 0, h), (side, 0, h), (side, side, h)])
    surfaces["Floor"] = ("Floor", "Adiabatic", [(0, 0, 0), (0, side, 0), (side, side, 0), (side, 0, 0)])
    m["BuildingSurface:Detailed"] = {
        name: {
            "surface_type": kind, "construction_name": "Envelope", "zone_name": ZONE,
            "outside_boundary_condition": boundary,
            "sun_exposure": "SunExposed" if boundary == "Outdoors" else "NoSun",
            "wind_exposure": "WindExposed" if boundary == "Outdoors" else "NoWind",
            "vertices": [dict(zip(("vertex_x_coordinate", "vertex_y_coordinate",
                                   "vertex_z_coordinate"), v, strict=True)) for v in vertices],
        }
        for name, (kind, boundary, vertices) in surfaces.items()
    }


def _ite(m: dict, it_w: float, hall: HallDesign, swing: float) -> float:
    """The IT equipment and its curves; returns the design server airflow in m3/s.

    CPU power / design = (0.5 + 0.5 u) (1 + a (T - T_d)) and server airflow / design =
    (0.7 + 0.3 u) (1 + b (T - T_d)), u = CPU loading, T = inlet degC, T_d = design inlet,
    a = ``cpu_power_per_k``, b = ``airflow_per_k`` (products expanded into biquadratics);
    server fan power / design = (airflow ratio)^3 (fan affinity law).
    """
    td, a, b = hall.design_inlet_c, hall.cpu_power_per_k, hall.airflow_per_k

    def product(c0: float, c1: float, k: float) -> dict:
        # (c0 + c1 x)(1 - k td + k y) = c0 q + c1 q x + c0 k y + c1 k x y, q = 1 - k td
        q = 1.0 - k * td
        return {
            "coefficient1_constant": c0 * q, "coefficient2_x": c1 * q, "coefficient3_x_2": 0.0,
            "coefficient4_y": c0 * k, "coefficient5_y_2": 0.0, "coefficient6_x_y": c1 * k,
            "minimum_value_of_x": 0.0, "maximum_value_of_x": 1.5,
            "minimum_value_of_y": -10.0, "maximum_value_of_y": 99.0,
        }

    m["Curve:Biquadratic"] = {
        "ITE CPU Power Curve": product(0.5, 0.5, a),
        "ITE Airflow Curve": product(0.7, 0.3, b),
    }
    m["Curve:Cubic"] = {"ITE Fan Power Curve": {
        "coefficient1_constant": 0.0, "coefficient2_x": 0.0, "coefficient3_x_2": 0.0,
        "coefficient4_x_3": 1.0, "minimum_value_of_x": 0.0, "maximum_value_of_x": 2.0,
    }}
    # CPU loading: a daily cosine peaking at 15:00, 1.0 at the peak (hour-ending values).
    loading = [(h, (1.0 + swing * math.cos(2 * math.pi * (h - 0.5 - 15) / 24)) / (1.0 + swing))
               for h in range(1, 25)]
    m["Schedule:Compact"]["CPU Loading"] = _schedule(loading)
    flow_per_w = 1.0 / (_RHO_AIR * _CP_AIR * hall.server_delta_t_k)
    m["ElectricEquipment:ITE:AirCooled"] = {ITE: {
        "zone_or_space_name": ZONE,
        "air_flow_calculation_method": "FlowFromSystem",
        "design_power_input_calculation_method": "Watts/Unit",
        "watts_per_unit": it_w, "number_of_units": 1.0,
        "cpu_loading_schedule_name": "CPU Loading",
        "cpu_power_input_function_of_loading_and_air_temperature_curve_name": "ITE CPU Power Curve",
        "design_fan_power_input_fraction": hall.server_fan_fraction,
        "design_fan_air_flow_rate_per_power_input": flow_per_w,
        "air_flow_function_of_loading_and_air_temperature_curve_name": "ITE Airflow Curve",
        "fan_power_input_function_of_flow_curve_name": "ITE Fan Power Curve",
        "design_entering_air_temperature": td,
        "environmental_class": "A2",
        "air_inlet_connection_type": "AdjustedSupply",
        "supply_air_node_name": "Hall Supply Node",
        "design_recirculation_fraction": hall.recirculation_fraction,
        "design_electric_power_supply_efficiency": hall.ups_efficiency,
        "fraction_of_electric_power_supply_losses_to_zone": 1.0,
    }}
    return it_w * flow_per_w


def _air_loop(m: dict, airflow: float, hall: HallDesign, q_w: float, chw_flow: float) -> None:
    """Constant-volume CRAH: return -> [economizer] -> fan -> chilled-water coil -> supply -> terminal -> zone."""
    m["Fan:ConstantVolume"] = {"CRAH Fan": {
        "availability_schedule_name": _ALWAYS, "fan_total_efficiency": 0.6,
        "pressure_rise": hall.fan_pressure_pa, "maximum_flow_rate": airflow,
        "motor_efficiency": 0.93, "motor_in_airstream_fraction": 1.0,
        "air_inlet_node_name": "CRAH Fan Inlet", "air_outlet_node_name": "CRAH Fan Outlet",
    }}
    t_out = hall.supply_air_c
    t_in = t_out + q_w / (_RHO_AIR * _CP_AIR * airflow)
    # Detailed analysis: the coil's wet share follows its surface temperature. The simple one
    # is all dry or all wet on the air's dew point against the entering water, so a sealed
    # hall's humidity, which only its start day sets, halved or doubled the water flow for
    # the same sensible duty (docs/energyplus.md, The CRAH coil's analysis).
    m["Coil:Cooling:Water"] = {"CRAH Coil": {
        "availability_schedule_name": _ALWAYS, "design_water_flow_rate": chw_flow,
        "design_air_flow_rate": airflow, "design_inlet_water_temperature": hall.chilled_water_c,
        "design_inlet_air_temperature": t_in, "design_outlet_air_temperature": t_out,
        "design_inlet_air_humidity_ratio": 0.008, "design_outlet_air_humidity_ratio": 0.008,
        "water_inlet_node_name": "CRAH Coil Water Inlet",
        "water_outlet_node_name": "CRAH Coil Water Outlet",
        "air_inlet_node_name": "CRAH Fan Outlet", "air_outlet_node_name": "Supply Air",
        "type_of_analysis": "DetailedAnalysis",
    }}
    m["Controller:WaterCoil"] = {"CRAH Coil Controller": {
        "control_variable": "Temperature", "action": "Reverse", "actuator_variable": "Flow",
        "sensor_node_name": "Supply Air", "actuator_node_name": "CRAH Coil Water Inlet",
        "controller_convergence_tolerance": 0.001, "maximum_actuated_flow": chw_flow,
    }}
    m["AirLoopHVAC:ControllerList"] = {"CRAH Controllers": {
        "controller_1_object_type": "Controller:WaterCoil",
        "controller_1_name": "CRAH Coil Controller",
    }}
    components = []
    if hall.economizer:
        _economizer(m, airflow, hall)
        components.append({
            "component_object_type": "AirLoopHVAC:OutdoorAirSystem",
            "component_name": "CRAH OA System", "component_inlet_node_name": "CRAH Return",
            "component_outlet_node_name": "CRAH Fan Inlet",
        })
    m["Branch"]["CRAH Supply Branch"] = {"components": [
        *components,
        {"component_object_type": "Fan:ConstantVolume", "component_name": "CRAH Fan",
         "component_inlet_node_name": "CRAH Fan Inlet",
         "component_outlet_node_name": "CRAH Fan Outlet"},
        {"component_object_type": "Coil:Cooling:Water", "component_name": "CRAH Coil",
         "component_inlet_node_name": "CRAH Fan Outlet", "component_outlet_node_name": "Supply Air"},
    ]}
    m["BranchList"]["CRAH Branches"] = {"branches": [{"branch_name": "CRAH Supply Branch"}]}
    m["AirLoopHVAC"] = {"CRAH": {
        "controller_list_name": "CRAH Controllers", "design_supply_air_flow_rate": airflow,
        "branch_list_name": "CRAH Branches",
        "supply_side_inlet_node_name": "CRAH Return" if hall.economizer else "CRAH Fan Inlet",
        "demand_side_outlet_node_name": "Hall Return Outlet",
        "demand_side_inlet_node_names": "Hall Supply Inlet",
        "supply_side_outlet_node_names": "Supply Air",
    }}
    m["AirLoopHVAC:ZoneSplitter"] = {"Hall Splitter": {
        "inlet_node_name": "Hall Supply Inlet", "nodes": [{"outlet_node_name": "Hall Terminal Inlet"}],
    }}
    m["AirLoopHVAC:SupplyPath"] = {"Hall Supply Path": {
        "supply_air_path_inlet_node_name": "Hall Supply Inlet",
        "components": [{"component_object_type": "AirLoopHVAC:ZoneSplitter",
                        "component_name": "Hall Splitter"}],
    }}
    m["AirLoopHVAC:ZoneMixer"] = {"Hall Mixer": {
        "outlet_node_name": "Hall Return Outlet", "nodes": [{"inlet_node_name": "Hall Return Node"}],
    }}
    m["AirLoopHVAC:ReturnPath"] = {"Hall Return Path": {
        "return_air_path_outlet_node_name": "Hall Return Outlet",
        "components": [{"component_object_type": "AirLoopHVAC:ZoneMixer",
                        "component_name": "Hall Mixer"}],
    }}
    m["AirTerminal:SingleDuct:ConstantVolume:NoReheat"] = {"Hall Terminal": {
        "availability_schedule_name": _ALWAYS, "air_inlet_node_name": "Hall Terminal Inlet",
        "air_outlet_node_name": "Hall Supply Node", "maximum_air_flow_rate": airflow,
    }}
    m["ZoneHVAC:AirDistributionUnit"] = {"Hall ADU": {
        "air_distribution_unit_outlet_node_name": "Hall Supply Node",
        "air_terminal_object_type": "AirTerminal:SingleDuct:ConstantVolume:NoReheat",
        "air_terminal_name": "Hall Terminal",
    }}
    m["ZoneHVAC:EquipmentList"] = {"Hall Equipment": {
        "load_distribution_scheme": "SequentialLoad",
        "equipment": [{"zone_equipment_object_type": "ZoneHVAC:AirDistributionUnit",
                       "zone_equipment_name": "Hall ADU", "zone_equipment_cooling_sequence": 1,
                       "zone_equipment_heating_or_no_load_sequence": 1}],
    }}
    m["ZoneHVAC:EquipmentConnections"] = {"Hall Connections": {
        "zone_name": ZONE, "zone_conditioning_equipment_list_name": "Hall Equipment",
        "zone_air_inlet_node_or_nodelist_name": "Hall Supply Node",
        "zone_air_node_name": "Hall Air Node",
        "zone_return_air_node_or_nodelist_name": "Hall Return Node",
    }}


def _economizer(m: dict, airflow: float, hall: HallDesign) -> None:
    """Air-side economizer ahead of the fan: outdoor air up to the whole supply flow when its
    enthalpy is below the return air's and its dry bulb below ``economizer_max_c``, modulated
    to hold the mixed air at the supply-air setpoint less the fan's heat; the coil trims."""
    m["OutdoorAir:Node"] = {"Outside Air Inlet": {}}
    m["OutdoorAir:Mixer"] = {"CRAH OA Mixer": {
        "mixed_air_node_name": "CRAH Fan Inlet", "outdoor_air_stream_node_name": "Outside Air Inlet",
        "relief_air_stream_node_name": "Relief Air", "return_air_stream_node_name": "CRAH Return",
    }}
    m["Controller:OutdoorAir"] = {"CRAH Economizer": {
        "relief_air_outlet_node_name": "Relief Air", "return_air_node_name": "CRAH Return",
        "mixed_air_node_name": "CRAH Fan Inlet", "actuator_node_name": "Outside Air Inlet",
        "minimum_outdoor_air_flow_rate": 0.0, "maximum_outdoor_air_flow_rate": airflow,
        "economizer_control_type": "DifferentialEnthalpy",
        "economizer_control_action_type": "ModulateFlow",
        "economizer_maximum_limit_dry_bulb_temperature": hall.economizer_max_c,
        "economizer_minimum_limit_dry_bulb_temperature": -30.0,
        "lockout_type": "NoLockout", "minimum_limit_type": "FixedMinimum",
    }}
    m["AirLoopHVAC:ControllerList"]["CRAH OA Controllers"] = {
        "controller_1_object_type": "Controller:OutdoorAir", "controller_1_name": "CRAH Economizer",
    }
    m["AirLoopHVAC:OutdoorAirSystem:EquipmentList"] = {"CRAH OA Equipment": {
        "component_1_object_type": "OutdoorAir:Mixer", "component_1_name": "CRAH OA Mixer",
    }}
    m["AirLoopHVAC:OutdoorAirSystem"] = {"CRAH OA System": {
        "controller_list_name": "CRAH OA Controllers",
        "outdoor_air_equipment_list_name": "CRAH OA Equipment",
    }}
    m["SetpointManager:MixedAir"] = {"Mixed Air Manager": {
        "reference_setpoint_node_name": "Supply Air", "fan_inlet_node_name": "CRAH Fan Inlet",
        "fan_outlet_node_name": "CRAH Fan Outlet", "setpoint_node_or_nodelist_name": "CRAH Fan Inlet",
    }}


def _curves_chiller(m: dict) -> None:
    """Chiller curves around the reference point (6.67 degC leaving chilled water, 29.4 degC
    entering condenser water): capacity +3 %/K chilled water, -1 %/K condenser; EIR -2.5 %/K
    chilled water, +2 %/K condenser (a smaller lift costs less); EIR(PLR) = 0.2 + 0.3 p + 0.5 p^2.
    """
    def linear(c0: float, kx: float, ky: float) -> dict:
        return {
            "coefficient1_constant": c0 - kx * 6.67 - ky * 29.4, "coefficient2_x": kx,
            "coefficient3_x_2": 0.0, "coefficient4_y": ky, "coefficient5_y_2": 0.0,
            "coefficient6_x_y": 0.0, "minimum_value_of_x": 4.0, "maximum_value_of_x": 22.0,
            "minimum_value_of_y": 10.0, "maximum_value_of_y": 40.0, "minimum_curve_output": 0.2,
        }
    m["Curve:Biquadratic"]["Chiller CapFT"] = linear(1.0, 0.03, -0.01)
    m["Curve:Biquadratic"]["Chiller EIRFT"] = linear(1.0, -0.025, 0.02)
    m["Curve:Quadratic"] = {"Chiller EIRFPLR": {
        "coefficient1_constant": 0.2, "coefficient2_x": 0.3, "coefficient3_x_2": 0.5,
        "minimum_value_of_x": 0.0, "maximum_value_of_x": 1.0,
    }}


def _plant(m: dict, q_w: float, hall: HallDesign, chw_flow: float) -> None:
    """Chilled-water loop (pump, chiller | coil) and condenser loop (pump, tower | chiller)."""
    _curves_chiller(m)
    cw_flow = q_w * (1 + 1 / hall.chiller_cop) / (_RHO_W * _CP_W * hall.condenser_range_k)
    chw_pump = ("Pump:VariableSpeed", "CHW Pump", *_nodes("CHW Pump"))
    cw_pump = ("Pump:ConstantSpeed", "CW Pump", *_nodes("CW Pump"))
    head = hall.pump_head_pa
    m["Pump:VariableSpeed"] = {"CHW Pump": {
        "inlet_node_name": chw_pump[2], "outlet_node_name": chw_pump[3],
        "design_maximum_flow_rate": chw_flow, "design_pump_head": head,
        "design_power_consumption": chw_flow * head / 0.7, "motor_efficiency": 0.9,
        "coefficient_1_of_the_part_load_performance_curve": 0.0,
        "coefficient_2_of_the_part_load_performance_curve": 0.0,
        "coefficient_3_of_the_part_load_performance_curve": 0.0,
        "coefficient_4_of_the_part_load_performance_curve": 1.0,
        "design_minimum_flow_rate": 0.0, "pump_control_type": "Intermittent",
    }}
    m["Pump:ConstantSpeed"] = {"CW Pump": {
        "inlet_node_name": cw_pump[2], "outlet_node_name": cw_pump[3],
        "design_flow_rate": cw_flow, "design_pump_head": head,
        "design_power_consumption": cw_flow * head / 0.7, "motor_efficiency": 0.9,
        "pump_control_type": "Intermittent",
    }}
    chiller = ("Chiller:Electric:EIR", "Chiller", "Chiller CHW Inlet", "Chiller CHW Outlet")
    m["Chiller:Electric:EIR"] = {"Chiller": {
        "reference_capacity": q_w, "reference_cop": hall.chiller_cop,
        "reference_leaving_chilled_water_temperature": 6.67,
        "reference_entering_condenser_fluid_temperature": 29.4,
        "reference_chilled_water_flow_rate": chw_flow,
        "reference_condenser_fluid_flow_rate": cw_flow,
        "cooling_capacity_function_of_temperature_curve_name": "Chiller CapFT",
        "electric_input_to_cooling_output_ratio_function_of_temperature_curve_name": "Chiller EIRFT",
        "electric_input_to_cooling_output_ratio_function_of_part_load_ratio_curve_name":
            "Chiller EIRFPLR",
        "minimum_part_load_ratio": 0.1, "maximum_part_load_ratio": 1.0,
        "optimum_part_load_ratio": 1.0, "minimum_unloading_ratio": 0.2,
        "chilled_water_inlet_node_name": chiller[2], "chilled_water_outlet_node_name": chiller[3],
        "condenser_inlet_node_name": "Chiller Cond Inlet",
        "condenser_outlet_node_name": "Chiller Cond Outlet",
        "condenser_type": "WaterCooled", "chiller_flow_mode": "LeavingSetpointModulated",
    }}
    coil = ("Coil:Cooling:Water", "CRAH Coil", "CRAH Coil Water Inlet", "CRAH Coil Water Outlet")
    tower = ("CoolingTower:SingleSpeed", "Tower", *_nodes("Tower"))
    rejected = q_w * (1 + 1 / hall.chiller_cop)
    m["CoolingTower:SingleSpeed"] = {"Tower": {
        "water_inlet_node_name": tower[2], "water_outlet_node_name": tower[3],
        "design_air_flow_rate": rejected / 25_000.0,
        "free_convection_regime_air_flow_rate": rejected / 250_000.0,
        "design_fan_power": rejected * hall.tower_fan_fraction,
        "performance_input_method": "NominalCapacity", "nominal_capacity": rejected * 1.25,
        "free_convection_capacity": rejected * 0.1, "design_approach_temperature": 3.9,
        "design_range_temperature": hall.condenser_range_k,
        "capacity_control": "FanCycling",
    }}
    sides = {
        "CHW Supply": (chw_pump, [chiller]), "CHW Demand": (None, [coil]),
        "CW Supply": (cw_pump, [tower]),
        "CW Demand": (None, [("Chiller:Electric:EIR", "Chiller", "Chiller Cond Inlet",
                              "Chiller Cond Outlet")]),
    }
    nodes = {k: _loop_side(m, k, first, par) for k, (first, par) in sides.items()}
    m["PlantEquipmentList"] = {"CHW Equipment": {"equipment": [
        {"equipment_object_type": "Chiller:Electric:EIR", "equipment_name": "Chiller"}]}}
    m["PlantEquipmentOperation:CoolingLoad"] = {
        f"{loop} Operation": {
            "load_range_1_lower_limit": 0.0, "load_range_1_upper_limit": 1e9,
            "range_1_equipment_list_name": f"{loop} Equipment",
        }
        for loop in ("CHW", "CW")
    }
    m["PlantEquipmentOperationSchemes"] = {"CHW Schemes": {
        "control_scheme_1_object_type": "PlantEquipmentOperation:CoolingLoad",
        "control_scheme_1_name": "CHW Operation", "control_scheme_1_schedule_name": _ALWAYS,
    }}
    m["CondenserEquipmentList"] = {"CW Equipment": {"equipment": [
        {"equipment_object_type": "CoolingTower:SingleSpeed", "equipment_name": "Tower"}]}}
    m["CondenserEquipmentOperationSchemes"] = {"CW Schemes": {
        "control_scheme_1_object_type": "PlantEquipmentOperation:CoolingLoad",
        "control_scheme_1_name": "CW Operation", "control_scheme_1_schedule_name": _ALWAYS,
    }}
    (s_in, s_out, s_br, s_con), (d_in, d_out, d_br, d_con) = nodes["CHW Supply"], nodes["CHW Demand"]
    m["PlantLoop"] = {"CHW Loop": {
        "fluid_type": "Water", "plant_equipment_operation_scheme_name": "CHW Schemes",
        "loop_temperature_setpoint_node_name": s_out, "maximum_loop_temperature": 30.0,
        "minimum_loop_temperature": 2.0, "maximum_loop_flow_rate": chw_flow,
        "plant_side_inlet_node_name": s_in, "plant_side_outlet_node_name": s_out,
        "plant_side_branch_list_name": s_br, "plant_side_connector_list_name": s_con,
        "demand_side_inlet_node_name": d_in, "demand_side_outlet_node_name": d_out,
        "demand_side_branch_list_name": d_br, "demand_side_connector_list_name": d_con,
    }}
    (s_in, s_out, s_br, s_con), (d_in, d_out, d_br, d_con) = nodes["CW Supply"], nodes["CW Demand"]
    m["CondenserLoop"] = {"CW Loop": {
        "fluid_type": "Water", "condenser_equipment_operation_scheme_name": "CW Schemes",
        "condenser_loop_temperature_setpoint_node_name": s_out, "maximum_loop_temperature": 45.0,
        "minimum_loop_temperature": 5.0, "maximum_loop_flow_rate": cw_flow,
        "condenser_side_inlet_node_name": s_in, "condenser_side_outlet_node_name": s_out,
        "condenser_side_branch_list_name": s_br, "condenser_side_connector_list_name": s_con,
        "demand_side_inlet_node_name": d_in, "demand_side_outlet_node_name": d_out,
        "condenser_demand_side_branch_list_name": d_br,
        "condenser_demand_side_connector_list_name": d_con,
    }}
    m["SetpointManager:Scheduled"] = {
        "Supply Air Manager": {"control_variable": "Temperature", "schedule_name": SAT_SCHEDULE,
                               "setpoint_node_or_nodelist_name": "Supply Air"},
        "Chilled Water Manager": {"control_variable": "Temperature", "schedule_name": CHW_SCHEDULE,
                                  "setpoint_node_or_nodelist_name": "CHW Setpoint Nodes"},
    }
    m["NodeList"] = {"CHW Setpoint Nodes": {"nodes": [
        {"node_name": nodes["CHW Supply"][1]}, {"node_name": chiller[3]}]}}
    m["SetpointManager:FollowOutdoorAirTemperature"] = {"Condenser Manager": {
        "control_variable": "Temperature", "reference_temperature_type": "OutdoorAirWetBulb",
        "offset_temperature_difference": hall.tower_approach_k,
        "maximum_setpoint_temperature": 35.0, "minimum_setpoint_temperature": 12.0,
        "setpoint_node_or_nodelist_name": nodes["CW Supply"][1],
    }}


def run_period(first_day: date, days: int) -> dict:
    """A RunPeriod of ``days`` whole days from ``first_day`` (local standard time)."""
    last = first_day + timedelta(days=days - 1)
    return {"dcpue": {
        "begin_month": first_day.month, "begin_day_of_month": first_day.day,
        "begin_year": first_day.year, "end_month": last.month, "end_day_of_month": last.day,
        "end_year": last.year, "use_weather_file_holidays_and_special_days": "No",
        "use_weather_file_daylight_saving_period": "No", "apply_weekend_holiday_rule": "No",
        "use_weather_file_rain_indicators": "Yes", "use_weather_file_snow_indicators": "Yes",
    }}


def hall_model(nominal_it_kw: float, daily_swing: float, hall: HallDesign, where: Location,
               timesteps_per_hour: int, first_day: date, days: int, supply_air_c: float,
               chilled_water_c: float) -> dict:
    """The epJSON document of the generated data hall (see the module docstring), its
    setpoint schedules at ``supply_air_c`` and ``chilled_water_c`` (degC)."""
    it_w = nominal_it_kw * 1000.0 * (1.0 + daily_swing)
    m: dict = {
        "Version": {"Version 1": {"version_identifier": "25.2"}},
        "SimulationControl": {"SimulationControl 1": {
            "do_zone_sizing_calculation": "No", "do_system_sizing_calculation": "No",
            "do_plant_sizing_calculation": "No", "run_simulation_for_sizing_periods": "No",
            "run_simulation_for_weather_file_run_periods": "Yes",
        }},
        "Building": {"dcpue hall": {
            "north_axis": 0.0, "terrain": "Suburbs", "solar_distribution": "MinimalShadowing",
            "maximum_number_of_warmup_days": 25, "minimum_number_of_warmup_days": 1,
        }},
        "Timestep": {"Timestep 1": {"number_of_timesteps_per_hour": timesteps_per_hour}},
        "Site:Location": {where.city or "site": {
            "latitude": where.latitude, "longitude": where.longitude,
            "time_zone": where.time_zone_h, "elevation": where.elevation_m,
        }},
        "RunPeriod": run_period(first_day, days),
        "GlobalGeometryRules": {"GlobalGeometryRules 1": {
            "starting_vertex_position": "UpperLeftCorner",
            "vertex_entry_direction": "Counterclockwise", "coordinate_system": "Relative",
        }},
        "ScheduleTypeLimits": {"Any Number": {}},
        "Schedule:Compact": {
            _ALWAYS: _schedule(1.0),
            SAT_SCHEDULE: _schedule(supply_air_c),
            CHW_SCHEDULE: _schedule(chilled_water_c),
        },
        "Branch": {}, "BranchList": {},
        "Output:SQLite": {"Output:SQLite 1": {"option_type": "Simple"}},
    }
    _envelope(m, it_w, hall)
    m["Lights"] = {"Hall Lights": {
        "zone_or_zonelist_or_space_or_spacelist_name": ZONE, "schedule_name": _ALWAYS,
        "design_level_calculation_method": "LightingLevel",
        "lighting_level": nominal_it_kw * 1000.0 * hall.lighting_fraction,
    }}
    server_flow = _ite(m, it_w, hall, daily_swing)
    airflow = server_flow * hall.airflow_margin
    # Heat to remove at design: IT (with UPS losses) plus the CRAH fan's heat.
    fan_w = airflow * hall.fan_pressure_pa / 0.6
    q_w = it_w / hall.ups_efficiency + fan_w
    capacity = q_w * hall.cooling_capacity_factor
    chw_flow = capacity / (_RHO_W * _CP_W * hall.chw_delta_t_k)
    _air_loop(m, airflow, hall, q_w, chw_flow)
    _plant(m, capacity, hall, chw_flow)
    return m
