//! The simulated machine families: their sensors (with real names, units and magnitudes), how each sensor
//! answers to load, and the failure modes that wear them out. Plain data, so the physics stays readable.

/// What a sensor measures; decides thermal lag, noise shape and the physically sensible range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Temperature,
    Vibration,
    Current,
    Voltage,
    Power,
    PowerFactor,
    Pressure,
    Flow,
    Speed,
}

/// One sensor of a family. `idle`/`full` are the readings with the load extrapolated to zero and at full load,
/// for the family's reference machine in a 20 °C plant; temperatures then follow the ambient by `ambient`.
#[derive(Clone, Copy, Debug)]
pub struct SensorSpec {
    pub name: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    pub idle: f64,
    pub full: f64,
    /// Curvature of the load response: affinity laws give flow ∝ n, head ∝ n², shaft power ∝ n³.
    pub load_exp: f64,
    /// Gaussian noise sd, sensor units.
    pub noise: f64,
    /// Share of the ambient swing a temperature follows (cooling water or a chiller attenuates it).
    pub ambient: f64,
    /// Thermal time constant, hours; zero for readings that follow the process instantly.
    pub tau_h: f64,
    /// Scales with the machine's rating (currents, powers, flows), so a 90 kW motor draws more than an 11 kW one.
    pub rated: bool,
}

const fn sensor(name: &'static str, unit: &'static str, kind: Kind, idle: f64, full: f64, load_exp: f64, noise: f64) -> SensorSpec {
    SensorSpec { name, unit, kind, idle, full, load_exp, noise, ambient: 0.0, tau_h: 0.0, rated: false }
}

const fn temp(name: &'static str, idle: f64, full: f64, load_exp: f64, noise: f64, ambient: f64, tau_h: f64) -> SensorSpec {
    SensorSpec { name, unit: "°C", kind: Kind::Temperature, idle, full, load_exp, noise, ambient, tau_h, rated: false }
}

const fn vib(name: &'static str, idle: f64, full: f64, load_exp: f64, noise: f64) -> SensorSpec {
    sensor(name, "mm/s", Kind::Vibration, idle, full, load_exp, noise)
}

const fn rated(mut s: SensorSpec) -> SensorSpec {
    s.rated = true;
    s
}

/// How a degradation changes a reading as the wear `w` goes from its initial value to 1 (failure).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// Proportional to wear: fouling and cooling losses build up steadily.
    Linear,
    /// `w^p`: bearing defects grow slowly, then fast once spalling starts.
    Power(f64),
    /// Nothing until wear passes the onset, then a smooth rise: the heat of a bearing that is nearly gone.
    Late(f64),
    /// Follows the cavitation episodes (more often and stronger as wear grows and at high load).
    Bursts,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// Adds `size` sensor units at full severity.
    Add,
    /// Multiplies the reading by `1 + size` at full severity (negative: it falls).
    Scale,
}

#[derive(Clone, Copy, Debug)]
pub struct Effect {
    pub sensor: &'static str,
    pub how: How,
    pub size: f64,
    pub shape: Shape,
}

const fn add(sensor: &'static str, size: f64, shape: Shape) -> Effect {
    Effect { sensor, how: How::Add, size, shape }
}

const fn scale(sensor: &'static str, size: f64, shape: Shape) -> Effect {
    Effect { sensor, how: How::Scale, size, shape }
}

#[derive(Clone, Copy, Debug)]
pub struct FailureMode {
    pub name: &'static str,
    /// Relative frequency among the family's lives.
    pub weight: f64,
    /// The reading that shows this mode most clearly (what a maintenance engineer would trend).
    pub signature: &'static str,
    pub effects: &'static [Effect],
}

#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub name: &'static str,
    pub sensors: &'static [SensorSpec],
    pub modes: &'static [FailureMode],
    /// Load levels the operating regimes switch between (fraction of rated duty).
    pub loads: [f64; 3],
}

impl Family {
    pub fn sensor_index(&self, name: &str) -> Option<usize> {
        self.sensors.iter().position(|s| s.name == name)
    }
}

/// A make and model of the demo fleet; `rating` scales the rated sensors of the family's reference machine.
#[derive(Clone, Copy, Debug)]
pub struct Model {
    pub slug: &'static str,
    pub family: &'static str,
    pub manufacturer: &'static str,
    pub model: &'static str,
    pub rating: f64,
}

use Shape::{Bursts, Late, Linear, Power};

/// Reference: 15 kW, 4-pole, 400 V induction motor.
const MOTOR: Family = Family {
    name: "motor",
    loads: [0.4, 0.7, 1.0],
    sensors: &[
        temp("bearing_de_temp_C", 32.0, 48.0, 1.5, 0.4, 0.8, 2.0),
        temp("bearing_nde_temp_C", 30.0, 42.0, 1.5, 0.4, 0.8, 2.0),
        temp("winding_temp_C", 40.0, 85.0, 2.0, 0.6, 0.9, 1.0),
        vib("rms_velocity_mm_s", 0.9, 1.4, 1.0, 0.05),
        // No-load (magnetising) current is about a third of rated current.
        rated(sensor("current_A", "A", Kind::Current, 10.0, 28.0, 1.3, 0.3)),
        sensor("voltage_V", "V", Kind::Voltage, 401.0, 396.0, 1.0, 1.2),
        // Power factor climbs steeply from no load and flattens near rated load.
        sensor("power_factor", "", Kind::PowerFactor, 0.55, 0.86, 0.5, 0.005),
        // Slip grows with load.
        sensor("speed_rpm", "rpm", Kind::Speed, 1498.0, 1465.0, 1.0, 1.5),
        rated(sensor("power_kW", "kW", Kind::Power, 0.8, 16.5, 1.0, 0.15)),
    ],
    modes: &[
        FailureMode {
            name: "bearing_wear",
            weight: 0.45,
            signature: "rms_velocity_mm_s",
            effects: &[
                scale("rms_velocity_mm_s", 4.0, Power(2.5)),
                add("bearing_de_temp_C", 9.0, Late(0.7)),
                add("bearing_nde_temp_C", 3.0, Late(0.8)),
            ],
        },
        FailureMode {
            name: "insulation_breakdown",
            weight: 0.25,
            signature: "winding_temp_C",
            effects: &[
                scale("current_A", 0.08, Power(1.5)),
                add("winding_temp_C", 30.0, Linear),
                add("power_factor", -0.05, Linear),
                scale("power_kW", 0.06, Power(1.5)),
            ],
        },
        FailureMode {
            name: "cooling_loss",
            weight: 0.3,
            signature: "winding_temp_C",
            effects: &[
                add("winding_temp_C", 35.0, Linear),
                add("bearing_de_temp_C", 8.0, Linear),
                // The cooling fan sits at the non-drive end.
                add("bearing_nde_temp_C", 10.0, Linear),
            ],
        },
    ],
};

/// Reference: 11 kW centrifugal pump on a variable-speed drive against some static head.
const PUMP: Family = Family {
    name: "pump",
    loads: [0.4, 0.7, 1.0],
    sensors: &[
        sensor("discharge_pressure_bar", "bar", Kind::Pressure, 2.0, 7.5, 2.0, 0.05),
        // Suction-line friction grows with flow squared.
        sensor("suction_pressure_bar", "bar", Kind::Pressure, 1.6, 1.2, 2.0, 0.03),
        rated(sensor("flow_m3h", "m³/h", Kind::Flow, 0.0, 60.0, 1.0, 0.8)),
        temp("bearing_temp_C", 35.0, 52.0, 1.2, 0.4, 0.7, 2.0),
        vib("overall_rms_mm_s", 1.2, 2.2, 1.5, 0.08),
        rated(sensor("motor_current_A", "A", Kind::Current, 6.0, 21.0, 2.5, 0.25)),
        rated(sensor("motor_power_kW", "kW", Kind::Power, 0.5, 11.5, 2.5, 0.12)),
        temp("seal_chamber_temp_C", 30.0, 42.0, 1.0, 0.4, 0.5, 1.5),
        temp("fluid_temp_C", 22.0, 24.0, 1.0, 0.2, 0.4, 6.0),
    ],
    modes: &[
        FailureMode {
            name: "bearing_wear",
            weight: 0.4,
            signature: "overall_rms_mm_s",
            effects: &[scale("overall_rms_mm_s", 3.5, Power(2.5)), add("bearing_temp_C", 10.0, Late(0.7))],
        },
        FailureMode {
            name: "cavitation",
            weight: 0.3,
            signature: "overall_rms_mm_s",
            // A clogging suction strainer lowers the available NPSH until the pump cavitates in bursts.
            effects: &[
                scale("suction_pressure_bar", -0.35, Linear),
                add("overall_rms_mm_s", 3.0, Bursts),
                scale("overall_rms_mm_s", 0.3, Linear),
                scale("discharge_pressure_bar", -0.25, Bursts),
                scale("discharge_pressure_bar", -0.1, Linear),
                scale("flow_m3h", -0.2, Bursts),
                scale("flow_m3h", -0.08, Linear),
                scale("motor_current_A", -0.1, Bursts),
            ],
        },
        FailureMode {
            name: "impeller_wear",
            weight: 0.3,
            signature: "discharge_pressure_bar",
            // Opened wear-ring clearances recirculate flow: head and flow sag, the motor works a little harder.
            effects: &[
                scale("flow_m3h", -0.18, Power(1.5)),
                scale("discharge_pressure_bar", -0.2, Power(1.5)),
                scale("motor_current_A", 0.05, Linear),
                scale("overall_rms_mm_s", 0.6, Power(2.0)),
            ],
        },
    ],
};

/// Reference: 30 kW oil-injected screw compressor; load is the loaded share of running time.
const COMPRESSOR: Family = Family {
    name: "compressor",
    loads: [0.5, 0.75, 1.0],
    sensors: &[
        temp("discharge_air_temp_C", 70.0, 88.0, 1.0, 0.6, 0.6, 0.5),
        temp("oil_temp_C", 62.0, 75.0, 1.0, 0.4, 0.5, 1.5),
        temp("intake_air_temp_C", 22.0, 24.0, 1.0, 0.3, 1.0, 0.3),
        // The pressure band's lower end is where a busy compressor spends its time.
        sensor("discharge_pressure_bar", "bar", Kind::Pressure, 7.4, 7.0, 1.0, 0.04),
        sensor("separator_dp_bar", "bar", Kind::Pressure, 0.15, 0.35, 1.5, 0.01),
        vib("rms_velocity_mm_s", 1.5, 2.6, 1.0, 0.08),
        rated(sensor("current_A", "A", Kind::Current, 20.0, 58.0, 1.0, 0.6)),
        temp("motor_winding_temp_C", 55.0, 95.0, 1.5, 0.6, 0.9, 1.0),
    ],
    modes: &[
        FailureMode {
            name: "bearing_wear",
            weight: 0.35,
            signature: "rms_velocity_mm_s",
            effects: &[scale("rms_velocity_mm_s", 3.5, Power(2.5)), add("oil_temp_C", 4.0, Late(0.75))],
        },
        FailureMode {
            name: "cooler_fouling",
            weight: 0.25,
            signature: "discharge_air_temp_C",
            // Element outlet trips near 110 °C.
            effects: &[add("discharge_air_temp_C", 22.0, Linear), add("oil_temp_C", 18.0, Linear), scale("current_A", 0.03, Linear)],
        },
        FailureMode {
            name: "valve_leakage",
            weight: 0.2,
            signature: "discharge_pressure_bar",
            // Leaking valves cannot hold the pressure band, so the unit runs loaded longer.
            effects: &[scale("discharge_pressure_bar", -0.15, Power(1.5)), scale("current_A", 0.06, Linear)],
        },
        FailureMode {
            name: "separator_clogging",
            weight: 0.2,
            signature: "separator_dp_bar",
            effects: &[add("separator_dp_bar", 0.9, Power(2.0)), scale("current_A", 0.05, Power(2.0)), add("oil_temp_C", 3.0, Linear)],
        },
    ],
};

/// Reference: 15 kW motor spindle of a turning centre with a chiller; load is the machining intensity.
const CNC: Family = Family {
    name: "cnc",
    loads: [0.3, 0.6, 0.95],
    sensors: &[
        temp("spindle_bearing_temp_C", 28.0, 40.0, 1.0, 0.3, 0.5, 1.0),
        temp("spindle_motor_temp_C", 30.0, 52.0, 1.5, 0.4, 0.5, 1.0),
        vib("spindle_vibration_mm_s", 0.6, 1.2, 1.0, 0.04),
        rated(sensor("spindle_power_kW", "kW", Kind::Power, 1.0, 14.0, 1.0, 0.3)),
        sensor("spindle_speed_rpm", "rpm", Kind::Speed, 1800.0, 3200.0, 1.0, 15.0),
        rated(sensor("spindle_current_A", "A", Kind::Current, 8.0, 34.0, 1.0, 0.5)),
        temp("coolant_temp_C", 22.0, 25.0, 1.0, 0.2, 0.35, 3.0),
        sensor("coolant_pressure_bar", "bar", Kind::Pressure, 14.0, 15.0, 1.0, 0.15),
    ],
    modes: &[
        FailureMode {
            name: "bearing_wear",
            weight: 0.45,
            signature: "spindle_vibration_mm_s",
            effects: &[
                scale("spindle_vibration_mm_s", 4.0, Power(2.5)),
                add("spindle_bearing_temp_C", 8.0, Late(0.7)),
                scale("spindle_power_kW", 0.04, Late(0.8)),
            ],
        },
        FailureMode {
            name: "cooling_loss",
            weight: 0.3,
            signature: "spindle_motor_temp_C",
            effects: &[
                add("coolant_temp_C", 12.0, Linear),
                add("spindle_bearing_temp_C", 14.0, Linear),
                add("spindle_motor_temp_C", 18.0, Linear),
            ],
        },
        FailureMode {
            name: "lubrication_loss",
            weight: 0.25,
            signature: "spindle_bearing_temp_C",
            // Oil-air lubrication starving: friction heat grows faster than the vibration.
            effects: &[
                add("spindle_bearing_temp_C", 20.0, Power(2.0)),
                scale("spindle_vibration_mm_s", 0.8, Power(2.0)),
                scale("spindle_power_kW", 0.06, Power(2.0)),
            ],
        },
    ],
};

/// Reference: 2.7 kW EC axial fan; load is the speed set-point (fan laws: flow ∝ n, pressure ∝ n², power ∝ n³).
const FAN: Family = Family {
    name: "fan",
    loads: [0.4, 0.7, 1.0],
    sensors: &[
        temp("bearing_temp_C", 30.0, 45.0, 1.2, 0.4, 0.9, 1.5),
        temp("motor_temp_C", 32.0, 60.0, 2.5, 0.5, 0.9, 1.0),
        vib("overall_rms_mm_s", 0.8, 1.8, 2.0, 0.06),
        // Unbalance force grows with speed squared.
        vib("vibration_1x_mm_s", 0.4, 1.2, 2.0, 0.04),
        rated(sensor("motor_current_A", "A", Kind::Current, 0.3, 4.3, 3.0, 0.06)),
        sensor("speed_rpm", "rpm", Kind::Speed, 0.0, 1150.0, 1.0, 4.0),
        rated(sensor("airflow_m3h", "m³/h", Kind::Flow, 0.0, 26_000.0, 1.0, 300.0)),
        sensor("static_pressure_Pa", "Pa", Kind::Pressure, 0.0, 180.0, 2.0, 3.0),
    ],
    modes: &[
        FailureMode {
            name: "imbalance",
            weight: 0.35,
            signature: "vibration_1x_mm_s",
            // Dust build-up on the blades: the once-per-revolution component grows steadily.
            effects: &[scale("vibration_1x_mm_s", 3.0, Linear), scale("overall_rms_mm_s", 1.2, Linear)],
        },
        FailureMode {
            name: "bearing_wear",
            weight: 0.4,
            signature: "overall_rms_mm_s",
            effects: &[
                scale("overall_rms_mm_s", 3.5, Power(2.5)),
                add("bearing_temp_C", 10.0, Late(0.7)),
                scale("vibration_1x_mm_s", 0.2, Late(0.8)),
            ],
        },
        FailureMode {
            name: "fouling",
            weight: 0.25,
            signature: "airflow_m3h",
            // Clogged filters and coils: less air against more pressure, a hotter motor.
            effects: &[
                scale("airflow_m3h", -0.35, Power(1.3)),
                scale("static_pressure_Pa", 0.5, Power(1.3)),
                scale("motor_current_A", 0.08, Linear),
                add("motor_temp_C", 8.0, Linear),
            ],
        },
    ],
};

/// Reference: 37 kW power unit of a hydraulic press; load is the press duty.
const HYDRAULIC: Family = Family {
    name: "hydraulic",
    loads: [0.4, 0.7, 1.0],
    sensors: &[
        temp("oil_temp_C", 38.0, 52.0, 1.2, 0.3, 0.7, 3.0),
        sensor("system_pressure_bar", "bar", Kind::Pressure, 150.0, 210.0, 1.0, 2.0),
        temp("pump_case_temp_C", 42.0, 58.0, 1.2, 0.4, 0.6, 1.5),
        vib("pump_vibration_mm_s", 1.0, 2.0, 1.0, 0.07),
        // Case-drain flow: the pump's internal leakage.
        sensor("leakage_flow_l_min", "l/min", Kind::Flow, 0.8, 1.6, 1.0, 0.06),
        rated(sensor("motor_current_A", "A", Kind::Current, 22.0, 68.0, 1.2, 0.8)),
        sensor("filter_dp_bar", "bar", Kind::Pressure, 0.4, 0.9, 1.5, 0.03),
    ],
    modes: &[
        FailureMode {
            name: "internal_leakage",
            weight: 0.4,
            signature: "leakage_flow_l_min",
            effects: &[
                scale("system_pressure_bar", -0.2, Power(1.5)),
                scale("leakage_flow_l_min", 2.5, Power(1.5)),
                add("pump_case_temp_C", 15.0, Power(1.5)),
                add("oil_temp_C", 4.0, Linear),
            ],
        },
        FailureMode {
            name: "cooler_failure",
            weight: 0.3,
            signature: "oil_temp_C",
            effects: &[add("oil_temp_C", 25.0, Linear), add("pump_case_temp_C", 20.0, Linear)],
        },
        FailureMode {
            name: "filter_clogging",
            weight: 0.3,
            signature: "filter_dp_bar",
            // The bypass valve opens around 3.5 bar.
            effects: &[add("filter_dp_bar", 3.0, Power(2.5)), scale("pump_vibration_mm_s", 0.5, Late(0.75))],
        },
    ],
};

static FAMILIES: [Family; 6] = [MOTOR, PUMP, COMPRESSOR, CNC, FAN, HYDRAULIC];

/// The legacy priority list; past its end the list repeats with new serial numbers.
static CATALOGUE: [Model; 10] = [
    Model { slug: "motor_siemens_1la7", family: "motor", manufacturer: "Siemens", model: "1LA7 163-4AA (11 kW)", rating: 0.75 },
    Model { slug: "motor_abb_m3bp", family: "motor", manufacturer: "ABB", model: "M3BP 280SMA 4 (90 kW)", rating: 6.0 },
    Model { slug: "motor_weg_w22", family: "motor", manufacturer: "WEG", model: "W22 200L 4 (30 kW)", rating: 2.0 },
    Model { slug: "pump_grundfos_cr3", family: "pump", manufacturer: "Grundfos", model: "CR 3-15", rating: 0.1 },
    Model { slug: "pump_flowserve_ansi", family: "pump", manufacturer: "Flowserve", model: "Mark 3 ANSI 3x2-13", rating: 3.0 },
    Model { slug: "compressor_atlas_copco_ga30", family: "compressor", manufacturer: "Atlas Copco", model: "GA 30", rating: 1.0 },
    Model { slug: "fan_ebm_papst_a3g710", family: "fan", manufacturer: "ebm-papst", model: "A3G710-AU21-01", rating: 1.0 },
    Model {
        slug: "hydraulic_beckwood_press",
        family: "hydraulic",
        manufacturer: "Beckwood",
        model: "150-ton four-post press power unit",
        rating: 1.0,
    },
    Model {
        slug: "compressor_ingersoll_rand_2545",
        family: "compressor",
        manufacturer: "Ingersoll Rand",
        model: "2545 two-stage",
        rating: 0.25,
    },
    Model { slug: "cnc_dmg_mori_nlx", family: "cnc", manufacturer: "DMG MORI", model: "NLX 2500", rating: 1.2 },
];

pub fn families() -> &'static [Family] {
    &FAMILIES
}

pub fn catalogue() -> &'static [Model] {
    &CATALOGUE
}

pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}
