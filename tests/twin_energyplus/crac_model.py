"""A bring-your-own EnergyPlus model written for the tests: a DX CRAC room, as IDF text.

Written from the EnergyPlus Input Output Reference, not taken from dcpue's generated hall
(chilled water, economizer, epJSON) nor from an example file. One zone (walls and roof
R = 3 m2K/W, adiabatic floor) holds two ``ElectricEquipment:ITE:AirCooled`` rows "Row A" and
"Row B" of ``unit_w`` W each, CPU loading 0.8, CPU power / design = (0.5 + 0.5 u)(1 + CPU_PER_K (T - 20)),
server airflow independent of the inlet temperature (so server fans draw their design
``FAN_FRACTION``), UPS efficiency 0.94, end uses "Rack CPU", "Rack Fans", "Rack UPS", inlet =
supply air + 10 % (row A) or 20 % (row B) room air. A constant-volume air loop "CRAC": blow-through fan (500 Pa),
then a single-speed air-cooled DX coil (``CoilSystem:Cooling:DX``) holding its outlet at the
supply node's setpoint, which ``SetpointManager:Scheduled`` takes from the schedule
"CRAC Supply Setpoint" (the coil's outlet node is also in the NodeList "CRAC Setpoint
Nodes"). SimulationControl switches the weather-file run period off, as many
example models do (dcpue switches it on).
"""

from __future__ import annotations

UNIT_W = 20_000.0
CPU_LOADING = 0.8
CPU_PER_K = 0.02  # CPU power per K of inlet above 20 degC (fraction of its value at 20 degC)
FAN_FRACTION = 0.1  # server fans' share of the design power
DESIGN_INLET_C = 20.0
UPS_EFFICIENCY = 0.94
SUPPLY_SCHEDULE = "CRAC Supply Setpoint"
SUPPLY_NODE = "CRAC Supply Outlet"
ITE_NAMES = ("Row A", "Row B")
RECIRCULATION = (0.10, 0.20)  # share of room air in each row's inlet
SETPOINT_NODES = "CRAC Setpoint Nodes"


def crac_model(unit_w: float = UNIT_W, supply_c: float = 18.0) -> str:
    """The IDF text; its supply schedule starts at ``supply_c`` degC."""
    it_w = 2 * unit_w
    server_flow = it_w / (1.2 * 1006.0 * 12.0)  # m3/s for a 12 K server temperature rise
    flow = 1.15 * server_flow
    capacity = 1.375 * it_w  # flow per capacity 5.8e-5 m3/s-W, within 4.0e-5..6.0e-5
    side = (it_w / 1000.0) ** 0.5 * 4.0
    a, q = CPU_PER_K, 1.0 - CPU_PER_K * DESIGN_INLET_C
    box = [(0, 0), (side, 0), (side, side), (0, side)]
    walls = []
    for i, name in enumerate(("S", "E", "N", "W")):
        (x0, y0), (x1, y1) = box[i], box[(i + 1) % 4]
        walls.append(f"BuildingSurface:Detailed,Wall {name},Wall,Shell,Server Room,,Outdoors,,"
                     f"SunExposed,WindExposed,0.5,4,{x0},{y0},3,{x0},{y0},0,{x1},{y1},0,"
                     f"{x1},{y1},3;")
    lines = [
        "Version,25.2;",
        "SimulationControl,No,No,No,Yes,No;",
        "Building,CRAC room,0,City,0.04,0.4,MinimalShadowing,25,1;",
        "Timestep,6;",
        "RunPeriod,Whole year,1,1,,12,31,,,Yes,Yes,No,Yes,Yes;",
        "GlobalGeometryRules,UpperLeftCorner,Counterclockwise,Relative;",
        "ScheduleTypeLimits,Any,,,Continuous;",
        "Schedule:Constant,On,Any,1;",
        f"Schedule:Constant,CPU Loading,Any,{CPU_LOADING};",
        f"Schedule:Compact,{SUPPLY_SCHEDULE},Any,Through: 12/31,For: AllDays,"
        f"Until: 24:00,{supply_c};",
        "Material:NoMass,Shell Layer,Smooth,3.0;",
        "Construction,Shell,Shell Layer;",
        "Zone,Server Room;",
        *walls,
        f"BuildingSurface:Detailed,Roof,Roof,Shell,Server Room,,Outdoors,,SunExposed,WindExposed,"
        f"0,4,0,{side},3,0,0,3,{side},0,3,{side},{side},3;",
        f"BuildingSurface:Detailed,Floor,Floor,Shell,Server Room,,Adiabatic,,NoSun,NoWind,"
        f"1,4,0,0,0,0,{side},0,{side},{side},0,{side},0,0;",
        # CPU: (0.5 + 0.5 x)(q + a y) expanded; airflow 1 at any loading and inlet; fans ~ flow
        f"Curve:Biquadratic,Rack CPU Curve,{0.5 * q},{0.5 * q},0,{0.5 * a},0,{0.5 * a},"
        "0,1.5,-10,99;",
        "Curve:Biquadratic,Rack Flow Curve,1,0,0,0,0,0,0,1.5,-10,99;",
        "Curve:Quadratic,Rack Fan Curve,0,1,0,0,2;",
        *(f"ElectricEquipment:ITE:AirCooled,{name},Server Room,FlowFromSystem,Watts/Unit,"
          f"{unit_w},1,,On,CPU Loading,Rack CPU Curve,{FAN_FRACTION},{1 / (1.2 * 1006.0 * 12.0)},"
          f"Rack Flow Curve,Rack Fan Curve,{DESIGN_INLET_C},A2,AdjustedSupply,,,Room Supply Node,"
          f"{recirculation},,{UPS_EFFICIENCY},,1,Rack CPU,Rack Fans,Rack UPS;"
          for name, recirculation in zip(ITE_NAMES, RECIRCULATION, strict=True)),
        # the CRAC: return -> fan -> DX coil -> supply
        f"Fan:ConstantVolume,CRAC Fan,On,0.6,500,{flow},0.9,1,CRAC Return,CRAC Fan Outlet;",
        # capacity +1 %/K coil wet bulb, -0.5 %/K outdoor; EIR -1 %/K, +1.5 %/K (at 19.44 / 35 degC)
        "Curve:Biquadratic,DX CapFT,0.9806,0.01,0,-0.005,0,0,12,26,10,50;",
        "Curve:Biquadratic,DX EIRFT,0.6694,-0.01,0,0.015,0,0,12,26,10,50;",
        "Curve:Quadratic,DX Flat,1,0,0,0,2;",
        "Curve:Quadratic,DX PLF,0.85,0.15,0,0,1;",
        f"Coil:Cooling:DX:SingleSpeed,CRAC Coil,On,{capacity},0.7,3.5,{flow},,,"
        f"CRAC Fan Outlet,{SUPPLY_NODE},DX CapFT,DX Flat,DX EIRFT,DX Flat,DX PLF;",
        f"CoilSystem:Cooling:DX,CRAC Coil System,On,CRAC Fan Outlet,{SUPPLY_NODE},{SUPPLY_NODE},"
        "Coil:Cooling:DX:SingleSpeed,CRAC Coil;",
        f"Branch,CRAC Branch,,Fan:ConstantVolume,CRAC Fan,CRAC Return,CRAC Fan Outlet,"
        f"CoilSystem:Cooling:DX,CRAC Coil System,CRAC Fan Outlet,{SUPPLY_NODE};",
        "BranchList,CRAC Branches,CRAC Branch;",
        f"AirLoopHVAC,CRAC,,,{flow},CRAC Branches,,CRAC Return,Room Return Outlet,"
        f"Room Supply Inlet,{SUPPLY_NODE};",
        f"SetpointManager:Scheduled,CRAC Supply Manager,Temperature,{SUPPLY_SCHEDULE},"
        f"{SUPPLY_NODE};",
        f"NodeList,{SETPOINT_NODES},{SUPPLY_NODE};",
        "AirLoopHVAC:ZoneSplitter,Room Splitter,Room Supply Inlet,Room Terminal Inlet;",
        "AirLoopHVAC:SupplyPath,Room Supply Path,Room Supply Inlet,AirLoopHVAC:ZoneSplitter,"
        "Room Splitter;",
        "AirLoopHVAC:ZoneMixer,Room Mixer,Room Return Outlet,Room Return Node;",
        "AirLoopHVAC:ReturnPath,Room Return Path,Room Return Outlet,AirLoopHVAC:ZoneMixer,"
        "Room Mixer;",
        f"AirTerminal:SingleDuct:ConstantVolume:NoReheat,Room Terminal,On,Room Terminal Inlet,"
        f"Room Supply Node,{flow};",
        "ZoneHVAC:AirDistributionUnit,Room ADU,Room Supply Node,"
        "AirTerminal:SingleDuct:ConstantVolume:NoReheat,Room Terminal;",
        "ZoneHVAC:EquipmentList,Room Equipment,SequentialLoad,ZoneHVAC:AirDistributionUnit,"
        "Room ADU,1,1,,;",
        "ZoneHVAC:EquipmentConnections,Server Room,Room Equipment,Room Supply Node,,Room Air Node,"
        "Room Return Node;",
        "Output:SQLite,SimpleAndTabular;",
    ]
    return "\n".join(lines) + "\n"
