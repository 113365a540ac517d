//! One verdict from the classifier, RUL and anomaly answers, each weighed by its model's grade. The rules
//! are the README's ("Verdict rules and model grades"), numbered the same:
//!
//! 1. Each answer proposes a severity: classifier — act now at or above halfway between its threshold and
//!    1, plan at its threshold, watch at half of it; RUL — act now under 24 h, plan under 72 h, watch under
//!    168 h (an answer at the model's cap proposes ok); anomaly — watch when flagged.
//! 2. Trust follows the grade: a useful model's proposal counts as it is, a limited model's counts as watch
//!    at most, a not-useful model is ignored.
//! 3. Two models graded limited or better that both propose plan or act agree: the lower of their two
//!    proposals counts, whatever their grades.
//! 4. The verdict is the highest counted severity (ok when nothing counts).
//! 5. The time in the sentence comes from a counted RUL answer; without one, from the classifier's horizon.
//! 6. Answers that disagree by two levels or more, or were weakened or ignored by rule 2 while proposing
//!    more than the verdict, are a contradiction: the verdict names each and says why it counted as it did.
//!
//! Stale data and missing models are states of their own, decided before any of this.
use super::quality::Grade;
use super::words;
use serde::{Deserialize, Serialize};

/// One scale for every machine; ordered, so the worst compares greatest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Watch,
    Plan,
    Act,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Watch => "watch",
            Severity::Plan => "plan maintenance",
            Severity::Act => "act now",
        }
    }
}

/// Whether the verdict speaks about the machine now, or why it cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Fresh,
    /// The newest data is older than the configured age: the answers describe the past.
    StaleData,
    NoModels,
    /// Models exist but no answer could be computed (no data, damaged model, wrong sensors).
    NoAnswer,
}

/// RUL urgency bounds (hours), the same defaults the RUL answers use.
pub const RUL_ACT_H: f64 = 24.0;
pub const RUL_PLAN_H: f64 = 72.0;
pub const RUL_WATCH_H: f64 = 168.0;

#[derive(Clone, Debug, Default)]
pub struct ClassifierInput {
    pub probability: f64,
    pub threshold: f64,
    pub grade: Option<Grade>,
    /// Hours ahead the classifier looks (its training horizon), when known.
    pub horizon_h: Option<f64>,
}

#[derive(Clone, Debug, Default)]
pub struct RulInput {
    pub hours: f64,
    pub at_cap: bool,
    pub grade: Option<Grade>,
}

#[derive(Clone, Debug, Default)]
pub struct AnomalyInput {
    pub is_anomaly: bool,
    pub grade: Option<Grade>,
}

#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub classifier: Option<ClassifierInput>,
    pub rul: Option<RulInput>,
    pub anomaly: Option<AnomalyInput>,
    /// Models exist for the machine (even if none answered).
    pub has_models: bool,
    /// Sensor names driving the answers, most important first (raw names).
    pub drivers: Vec<String>,
    /// Hours since the newest data arrived.
    pub data_age_h: Option<f64>,
    pub stale_after_h: f64,
}

/// How one model's answer was counted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weighed {
    pub model: String,
    pub says: String,
    pub proposes: Severity,
    pub counts_as: Option<Severity>,
    pub grade: Option<Grade>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub state: State,
    /// Absent unless the state is fresh.
    pub severity: Option<Severity>,
    /// "act now", "plan maintenance", ..., "stale data", "no models yet".
    pub label: String,
    /// The action and the reason, one sentence.
    pub sentence: String,
    /// How each answer was weighed, and contradictions resolved, in words.
    pub explanation: Vec<String>,
    pub contradiction: bool,
    pub rul_days: Option<f64>,
    /// Driving sensors in plant words.
    pub drivers: Vec<String>,
    pub weighed: Vec<Weighed>,
    /// What the answers would say if the data were fresh (for a stale machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity_on_old_data: Option<Severity>,
    /// The anomaly model's answer on the latest data, whatever its grade (a dashboard's "anomalous now");
    /// None without an anomaly answer or when the data is stale.
    #[serde(default)]
    pub anomalous: Option<bool>,
    /// Sort key: higher needs attention sooner.
    pub rank: u8,
}

fn classifier_proposal(c: &ClassifierInput) -> Severity {
    let t = c.threshold;
    if c.probability >= (1.0 + t) / 2.0 {
        Severity::Act
    } else if c.probability >= t {
        Severity::Plan
    } else if c.probability >= t / 2.0 {
        Severity::Watch
    } else {
        Severity::Ok
    }
}

fn rul_proposal(r: &RulInput) -> Severity {
    if r.at_cap || r.hours >= RUL_WATCH_H {
        Severity::Ok
    } else if r.hours < RUL_ACT_H {
        Severity::Act
    } else if r.hours < RUL_PLAN_H {
        Severity::Plan
    } else {
        Severity::Watch
    }
}

/// Rule 2.
fn trusted(proposal: Severity, grade: Option<Grade>) -> Option<Severity> {
    match grade {
        Some(Grade::Useful) => Some(proposal),
        Some(Grade::Limited) | None => Some(proposal.min(Severity::Watch)),
        Some(Grade::NotUseful) => None,
    }
}

fn grade_words(g: Option<Grade>) -> &'static str {
    g.map_or("ungraded", Grade::label)
}

fn days(hours: f64) -> String {
    if hours < 36.0 { format!("~{} h", hours.round().max(1.0)) } else { format!("~{} days", (hours / 24.0).round()) }
}

pub fn decide(inp: &Inputs) -> Verdict {
    let drivers: Vec<String> = inp.drivers.iter().take(2).map(|s| words::sensor(s)).collect();
    let mut weighed = Vec::new();
    if let Some(c) = &inp.classifier {
        let p = classifier_proposal(c);
        weighed.push(Weighed {
            model: "failure model".into(),
            says: format!("{} % failure probability", (c.probability * 100.0).round()),
            proposes: p,
            counts_as: trusted(p, c.grade),
            grade: c.grade,
        });
    }
    if let Some(r) = &inp.rul {
        let p = rul_proposal(r);
        let says = if r.at_cap { format!("RUL at least {}", days(r.hours)) } else { format!("RUL {}", days(r.hours)) };
        weighed.push(Weighed { model: "RUL model".into(), says, proposes: p, counts_as: trusted(p, r.grade), grade: r.grade });
    }
    if let Some(a) = &inp.anomaly {
        let p = if a.is_anomaly { Severity::Watch } else { Severity::Ok };
        let says = if a.is_anomaly { "readings abnormal".to_string() } else { "readings normal".to_string() };
        weighed.push(Weighed { model: "anomaly model".into(), says, proposes: p, counts_as: trusted(p, a.grade), grade: a.grade });
    }
    // Rule 3: two witnesses of at least limited grade agreeing on plan or worse.
    let witnesses: Vec<&Weighed> =
        weighed.iter().filter(|w| w.proposes >= Severity::Plan && w.grade.is_none_or(|g| g >= Grade::Limited)).collect();
    let agreed = if witnesses.len() >= 2 { witnesses.iter().map(|w| w.proposes).min() } else { None };
    let agreed_models: Vec<String> = if agreed.is_some() { witnesses.iter().map(|w| w.model.clone()).collect() } else { Vec::new() };
    // Rule 4.
    let severity = weighed.iter().filter_map(|w| w.counts_as).chain(agreed).max().unwrap_or(Severity::Ok);

    // Rule 5: timing.
    let rul_counted = inp.rul.as_ref().filter(|r| r.grade.is_none_or(|g| g >= Grade::Limited) && !r.at_cap);
    let rul_days = inp.rul.as_ref().filter(|r| !r.at_cap).map(|r| (r.hours / 24.0 * 10.0).round() / 10.0);
    let when = match (rul_counted, inp.classifier.as_ref().and_then(|c| c.horizon_h)) {
        (Some(r), _) => format!(" within {}", days(r.hours)),
        (None, Some(h)) => format!(" within {}", days(h)),
        (None, None) => String::new(),
    };
    let reason = if drivers.is_empty() { String::new() } else { format!(" — {} driving it", words::join(&drivers)) };
    let sentence = match severity {
        Severity::Act => format!("Act now: inspect before the next shift{reason}"),
        Severity::Plan => format!("Plan maintenance{when}{reason}"),
        Severity::Watch => format!("Watch: early signs, no action needed yet{reason}"),
        Severity::Ok => "No action needed: the trusted models see nothing unusual".to_string(),
    };

    // Rule 6: explain.
    let mut explanation = Vec::new();
    let proposed: Vec<Severity> = weighed.iter().map(|w| w.proposes).collect();
    let spread = proposed.iter().max().zip(proposed.iter().min()).is_some_and(|(hi, lo)| (*hi as u8) >= (*lo as u8) + 2);
    let mut contradiction = spread;
    for w in &weighed {
        let line = match w.counts_as {
            _ if agreed_models.contains(&w.model) && agreed == Some(severity) && w.counts_as < agreed => {
                contradiction = true;
                format!(
                    "{} says {} ({}); its grade alone allows only watch, but it agrees with another model, so together they count as {}",
                    w.model,
                    w.says,
                    w.proposes.label(),
                    severity.label()
                )
            }
            None => {
                if w.proposes > severity {
                    contradiction = true;
                }
                format!(
                    "{} says {} ({}), but it is graded not useful on its test data, so it is ignored",
                    w.model,
                    w.says,
                    w.proposes.label()
                )
            }
            Some(c) if c < w.proposes => {
                contradiction = true;
                format!(
                    "{} says {} ({}), but it is graded {}, so alone it counts as {} at most",
                    w.model,
                    w.says,
                    w.proposes.label(),
                    grade_words(w.grade),
                    c.label()
                )
            }
            Some(c) if c < severity && w.proposes == Severity::Ok => {
                format!("{} says {} ({}); a more urgent trusted answer outweighs it", w.model, w.says, grade_words(w.grade))
            }
            Some(_) => format!("{} says {} ({}, {})", w.model, w.says, w.proposes.label(), grade_words(w.grade)),
        };
        explanation.push(line);
    }
    if contradiction {
        explanation.insert(0, format!("The models disagree; the verdict is {} because:", severity.label()));
    }

    let fresh = Verdict {
        state: State::Fresh,
        severity: Some(severity),
        label: severity.label().into(),
        sentence,
        explanation,
        contradiction,
        rul_days,
        drivers,
        weighed,
        severity_on_old_data: None,
        anomalous: inp.anomaly.as_ref().map(|a| a.is_anomaly),
        rank: 10 + severity as u8 * 10,
    };
    if !inp.has_models && fresh.weighed.is_empty() {
        return Verdict {
            state: State::NoModels,
            severity: None,
            label: "no models yet".into(),
            sentence: "No models yet: train this machine's models to get a verdict".into(),
            explanation: Vec::new(),
            contradiction: false,
            rul_days: None,
            drivers: Vec::new(),
            weighed: Vec::new(),
            severity_on_old_data: None,
            anomalous: None,
            rank: 1,
        };
    }
    if let Some(age) = inp.data_age_h.filter(|a| *a > inp.stale_after_h) {
        return Verdict {
            state: State::StaleData,
            severity: None,
            label: "stale data".into(),
            sentence: format!("No new data for {}: check the sensor feed; no current verdict", words::age(age * 3600.0)),
            severity_on_old_data: (!fresh.weighed.is_empty()).then_some(severity),
            anomalous: None,
            rank: 25,
            ..fresh
        };
    }
    if fresh.weighed.is_empty() {
        return Verdict {
            state: State::NoAnswer,
            severity: None,
            label: "no answer".into(),
            sentence: "The models could not answer: see the predictions for why".into(),
            rank: 5,
            ..fresh
        };
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo(c: Grade, r: Grade, a: Grade) -> Inputs {
        Inputs {
            classifier: Some(ClassifierInput { probability: 0.97, threshold: 0.4, grade: Some(c), horizon_h: Some(48.0) }),
            rul: Some(RulInput { hours: 41.0, at_cap: false, grade: Some(r) }),
            anomaly: Some(AnomalyInput { is_anomaly: false, grade: Some(a) }),
            has_models: true,
            drivers: vec!["overall_rms_mm_s".into(), "bearing_temp_C".into(), "flow_m3_h".into()],
            data_age_h: Some(0.5),
            stale_after_h: 24.0,
        }
    }

    #[test]
    fn rule1_proposals() {
        let c = |p| classifier_proposal(&ClassifierInput { probability: p, threshold: 0.4, grade: None, horizon_h: None });
        assert_eq!(c(0.71), Severity::Act);
        assert_eq!(c(0.5), Severity::Plan);
        assert_eq!(c(0.25), Severity::Watch);
        assert_eq!(c(0.1), Severity::Ok);
        let r = |h, at_cap| rul_proposal(&RulInput { hours: h, at_cap, grade: None });
        assert_eq!(r(10.0, false), Severity::Act);
        assert_eq!(r(41.0, false), Severity::Plan);
        assert_eq!(r(100.0, false), Severity::Watch);
        assert_eq!(r(500.0, false), Severity::Ok);
        assert_eq!(r(10.0, true), Severity::Ok);
    }

    #[test]
    fn rule2_trust_follows_the_grade() {
        assert_eq!(trusted(Severity::Act, Some(Grade::Useful)), Some(Severity::Act));
        assert_eq!(trusted(Severity::Act, Some(Grade::Limited)), Some(Severity::Watch));
        assert_eq!(trusted(Severity::Act, Some(Grade::NotUseful)), None);
    }

    #[test]
    fn demo_contradiction_with_all_models_useful_acts_now_and_explains_the_normal_anomaly() {
        let v = decide(&demo(Grade::Useful, Grade::Useful, Grade::Useful));
        assert_eq!(v.severity, Some(Severity::Act));
        assert!(v.contradiction, "97 % vs normal spans three levels");
        assert!(v.sentence.starts_with("Act now"), "{}", v.sentence);
        assert!(v.sentence.contains("vibration RMS and bearing temperature"), "{}", v.sentence);
        assert!(v.explanation.iter().any(|l| l.contains("anomaly model says readings normal")), "{:?}", v.explanation);
    }

    #[test]
    fn demo_contradiction_as_graded_in_the_demo_plans_within_two_days() {
        // The demo's grades: classifier limited (2 in 3 alarms false), RUL limited, anomaly not useful (recall 6 %).
        let v = decide(&demo(Grade::Limited, Grade::Limited, Grade::NotUseful));
        assert_eq!(v.severity, Some(Severity::Plan), "{v:?}");
        assert_eq!(v.sentence, "Plan maintenance within ~2 days — vibration RMS and bearing temperature driving it");
        assert!(v.contradiction);
        assert!(v.explanation[0].contains("disagree"));
        assert!(v.explanation.iter().any(|l| l.contains("agrees with another model")), "{:?}", v.explanation);
        assert!(
            v.explanation.iter().any(|l| l.contains("anomaly model") && l.contains("not useful"))
                || v.explanation.iter().any(|l| l.contains("anomaly model"))
        );
        assert_eq!(v.rul_days, Some(1.7));
    }

    #[test]
    fn rule3_needs_two_witnesses_of_at_least_limited_grade() {
        // RUL not useful: the limited classifier stands alone and counts as watch.
        let v = decide(&demo(Grade::Limited, Grade::NotUseful, Grade::NotUseful));
        assert_eq!(v.severity, Some(Severity::Watch));
        assert!(v.explanation.iter().any(|l| l.contains("RUL model") && l.contains("ignored")));
        // Timing falls back to the classifier's horizon when the RUL model is ignored (rule 5).
        let mut i = demo(Grade::Useful, Grade::NotUseful, Grade::NotUseful);
        i.classifier.as_mut().unwrap().probability = 0.5;
        let v = decide(&i);
        assert_eq!(v.severity, Some(Severity::Plan));
        assert!(v.sentence.starts_with("Plan maintenance within ~2 days"), "{}", v.sentence);
    }

    #[test]
    fn rule4_nothing_counted_is_ok() {
        let mut i = demo(Grade::Useful, Grade::Useful, Grade::Useful);
        i.classifier.as_mut().unwrap().probability = 0.05;
        i.rul.as_mut().unwrap().hours = 900.0;
        let v = decide(&i);
        assert_eq!(v.severity, Some(Severity::Ok));
        assert!(!v.contradiction);
        assert_eq!(v.rank, 10);
    }

    #[test]
    fn anomaly_alone_is_watch() {
        let i = Inputs {
            anomaly: Some(AnomalyInput { is_anomaly: true, grade: Some(Grade::Useful) }),
            has_models: true,
            stale_after_h: 24.0,
            ..Default::default()
        };
        assert_eq!(decide(&i).severity, Some(Severity::Watch));
    }

    #[test]
    fn stale_data_is_a_state_of_its_own_and_keeps_what_old_data_said() {
        let mut i = demo(Grade::Useful, Grade::Useful, Grade::Useful);
        i.data_age_h = Some(30.0);
        let v = decide(&i);
        assert_eq!(v.state, State::StaleData);
        assert_eq!(v.severity, None);
        assert_eq!(v.severity_on_old_data, Some(Severity::Act));
        assert!(v.sentence.contains("30 h"), "{}", v.sentence);
        assert_eq!(v.anomalous, None, "old data says nothing about now");
    }

    #[test]
    fn anomalous_now_is_the_anomaly_answer_whatever_its_grade() {
        let mut i = demo(Grade::Useful, Grade::Useful, Grade::NotUseful);
        assert_eq!(decide(&i).anomalous, Some(false));
        i.anomaly = Some(AnomalyInput { is_anomaly: true, grade: Some(Grade::NotUseful) });
        assert_eq!(decide(&i).anomalous, Some(true));
        i.anomaly = None;
        assert_eq!(decide(&i).anomalous, None);
    }

    #[test]
    fn no_models_and_no_answer() {
        let v = decide(&Inputs { stale_after_h: 24.0, ..Default::default() });
        assert_eq!(v.state, State::NoModels);
        let v = decide(&Inputs { has_models: true, stale_after_h: 24.0, ..Default::default() });
        assert_eq!(v.state, State::NoAnswer);
    }

    #[test]
    fn ranks_sort_worst_first() {
        let act = decide(&demo(Grade::Useful, Grade::Useful, Grade::Useful)).rank;
        let mut s = demo(Grade::Useful, Grade::Useful, Grade::Useful);
        s.data_age_h = Some(100.0);
        let stale = decide(&s).rank;
        let none = decide(&Inputs::default()).rank;
        assert!(act > stale && stale > none);
    }
}
