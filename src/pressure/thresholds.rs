//! Eviction thresholds in the kubelet's syntax (pkg/kubelet/eviction/api/types.go,
//! helpers.go `ParseThresholdConfig`): `--eviction-hard nodefs.available<10%,...`,
//! `--eviction-soft` with `--eviction-soft-grace-period nodefs.available=1m30s`, and
//! `--eviction-minimum-reclaim nodefs.available=500Mi`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// An eviction signal (evictionapi.Signal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

pub const SIGNALS: [Signal; 6] = [
    Signal::MemoryAvailable,
    Signal::NodeFsAvailable,
    Signal::NodeFsInodesFree,
    Signal::ImageFsAvailable,
    Signal::ImageFsInodesFree,
    Signal::PidAvailable,
];

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        SIGNALS.into_iter().find(|x| x.as_str() == s)
    }

    /// Counted in inodes or pids, not bytes (the quantity is then a plain number).
    pub fn is_count(self) -> bool {
        matches!(
            self,
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree | Signal::PidAvailable
        )
    }

    /// A disk signal: acted on by reclaiming and evicting.
    pub fn is_disk(self) -> bool {
        !matches!(self, Signal::MemoryAvailable | Signal::PidAvailable)
    }

    /// The resource the kubelet names in an eviction message (signalToResource, with
    /// the images on the node's filesystem or not).
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    /// The node condition a met threshold of this signal sets.
    pub fn condition(self) -> Condition {
        match self {
            Signal::MemoryAvailable => Condition::MemoryPressure,
            Signal::PidAvailable => Condition::PidPressure,
            _ => Condition::DiskPressure,
        }
    }
}

/// The node conditions eviction reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    MemoryPressure,
    DiskPressure,
    PidPressure,
}

pub const CONDITIONS: [Condition; 3] = [
    Condition::MemoryPressure,
    Condition::DiskPressure,
    Condition::PidPressure,
];

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::MemoryPressure => "MemoryPressure",
            Condition::DiskPressure => "DiskPressure",
            Condition::PidPressure => "PIDPressure",
        }
    }

    /// The kubelet's reason for the condition (pkg/kubelet/nodestatus/setters.go).
    pub fn reason(self, on: bool) -> &'static str {
        match (self, on) {
            (Condition::MemoryPressure, true) => "KubeletHasInsufficientMemory",
            (Condition::MemoryPressure, false) => "KubeletHasSufficientMemory",
            (Condition::DiskPressure, true) => "KubeletHasDiskPressure",
            (Condition::DiskPressure, false) => "KubeletHasNoDiskPressure",
            (Condition::PidPressure, true) => "KubeletHasInsufficientPID",
            (Condition::PidPressure, false) => "KubeletHasSufficientPID",
        }
    }
}

/// A threshold's value: an absolute quantity or a percentage of capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Quantity(u64),
    Percent(f64),
}

impl Value {
    /// The value in the signal's unit, for a resource of `capacity`.
    pub fn of(self, capacity: u64) -> u64 {
        match self {
            Value::Quantity(q) => q,
            Value::Percent(p) => (capacity as f64 * p / 100.0) as u64,
        }
    }
}

/// One threshold: met when the signal's available amount is below `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
    /// Zero for a hard threshold; how long a soft one must be met before it acts.
    pub grace: Duration,
    pub min_reclaim: Option<Value>,
}

impl Threshold {
    pub fn is_hard(&self) -> bool {
        self.grace.is_zero()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ThresholdError {
    #[error("invalid eviction threshold {input:?}: expected SIGNAL<QUANTITY or SIGNAL<PERCENT%, like nodefs.available<10%")]
    Statement { input: String },
    #[error("unknown eviction signal {signal:?}: expected one of memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree, pid.available")]
    Signal { signal: String },
    #[error("invalid eviction threshold value {input:?}: {reason}")]
    Value { input: String, reason: String },
    #[error("invalid entry {input:?}: expected SIGNAL=VALUE")]
    Pair { input: String },
    #[error("eviction signal {signal} appears twice in {flag}")]
    Duplicate { signal: &'static str, flag: String },
    #[error(
        "soft eviction threshold {signal} has no grace period in --eviction-soft-grace-period"
    )]
    NoGrace { signal: &'static str },
    #[error("--eviction-soft-grace-period names {signal}, which has no soft threshold")]
    GraceWithoutSoft { signal: &'static str },
    #[error("invalid grace period {input:?} of {signal}")]
    Grace { signal: &'static str, input: String },
}

/// The kubelet's default hard thresholds on Linux (DefaultEvictionHard), applied only when
/// no `evictionHard` is configured at all: setting any leaves the others unset.
pub const DEFAULT_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%,imagefs.inodesFree<5%";

/// Parses a value: `10%` or a quantity (`500Mi`, `1G`, `1000`).
pub fn parse_value(s: &str) -> Result<Value, ThresholdError> {
    let bad = |reason: &str| ThresholdError::Value {
        input: s.to_string(),
        reason: reason.to_string(),
    };
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        let p: f64 = p.parse().map_err(|_| bad("not a number"))?;
        if !(0.0..=100.0).contains(&p) {
            return Err(bad("a percentage is between 0% and 100%"));
        }
        return Ok(Value::Percent(p));
    }
    let q = crate::manifest::quantity::parse_memory_bytes(&Quantity(s.to_string()))
        .map_err(|e| bad(&e.to_string()))?;
    if q < 0 {
        return Err(bad("negative"));
    }
    Ok(Value::Quantity(q as u64))
}

/// `a<1%,b<2Mi` (or the config file's map, joined so) into signal → value; a zero value
/// switches the signal off, as the kubelet's parser drops it.
pub fn parse_statements(s: &str, flag: &str) -> Result<BTreeMap<Signal, Value>, ThresholdError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('<').ok_or(ThresholdError::Statement {
            input: part.to_string(),
        })?;
        let signal = Signal::parse(name.trim()).ok_or(ThresholdError::Signal {
            signal: name.trim().to_string(),
        })?;
        let value = parse_value(value)?;
        if out.insert(signal, value).is_some() {
            return Err(ThresholdError::Duplicate {
                signal: signal.as_str(),
                flag: flag.to_string(),
            });
        }
    }
    out.retain(|_, v| !matches!(v, Value::Quantity(0)) && *v != Value::Percent(0.0));
    Ok(out)
}

/// `a=x,b=y` into signal → text.
pub fn parse_pairs(s: &str) -> Result<BTreeMap<Signal, String>, ThresholdError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').ok_or(ThresholdError::Pair {
            input: part.to_string(),
        })?;
        let signal = Signal::parse(name.trim()).ok_or(ThresholdError::Signal {
            signal: name.trim().to_string(),
        })?;
        out.insert(signal, value.trim().to_string());
    }
    Ok(out)
}

/// The flags' text, as given (None: not given).
#[derive(Debug, Clone, Default)]
pub struct ThresholdFlags {
    pub hard: Option<String>,
    pub soft: String,
    pub soft_grace: String,
    pub min_reclaim: String,
}

/// Every threshold the flags configure, hard ones first.
pub fn thresholds(f: &ThresholdFlags) -> Result<Vec<Threshold>, ThresholdError> {
    let hard = parse_statements(f.hard.as_deref().unwrap_or(DEFAULT_HARD), "--eviction-hard")?;
    let soft = parse_statements(&f.soft, "--eviction-soft")?;
    let graces = parse_pairs(&f.soft_grace)?;
    let reclaim = parse_pairs(&f.min_reclaim)?
        .into_iter()
        .map(|(s, v)| parse_value(&v).map(|v| (s, v)))
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    for s in graces.keys() {
        if !soft.contains_key(s) {
            return Err(ThresholdError::GraceWithoutSoft { signal: s.as_str() });
        }
    }
    let mut out: Vec<Threshold> = hard
        .into_iter()
        .map(|(signal, value)| Threshold {
            signal,
            value,
            grace: Duration::ZERO,
            min_reclaim: reclaim.get(&signal).copied(),
        })
        .collect();
    for (signal, value) in soft {
        let text = graces.get(&signal).ok_or(ThresholdError::NoGrace {
            signal: signal.as_str(),
        })?;
        let grace = crate::config::parse_duration(text)
            .ok()
            .filter(|g| !g.is_zero())
            .ok_or(ThresholdError::Grace {
                signal: signal.as_str(),
                input: text.clone(),
            })?;
        out.push(Threshold {
            signal,
            value,
            grace,
            min_reclaim: reclaim.get(&signal).copied(),
        });
    }
    Ok(out)
}

/// A quantity as Kubernetes prints a binary-SI one (`1536Ki`, `10Mi`, `1000`); counts
/// as plain numbers.
pub fn format_quantity(n: u64, count: bool) -> String {
    if count || n == 0 {
        return n.to_string();
    }
    let mut v = n;
    let mut unit = 0;
    while v % 1024 == 0 && unit < 6 {
        v /= 1024;
        unit += 1;
    }
    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][unit];
    format!("{v}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(hard: Option<&str>, soft: &str, grace: &str, reclaim: &str) -> ThresholdFlags {
        ThresholdFlags {
            hard: hard.map(str::to_string),
            soft: soft.into(),
            soft_grace: grace.into(),
            min_reclaim: reclaim.into(),
        }
    }

    #[test]
    fn defaults_are_the_kubelets_and_any_hard_flag_replaces_them() {
        let d = thresholds(&ThresholdFlags::default()).unwrap();
        let got: Vec<(&str, Value)> = d.iter().map(|t| (t.signal.as_str(), t.value)).collect();
        assert_eq!(
            got,
            [
                ("memory.available", Value::Quantity(100 << 20)),
                ("nodefs.available", Value::Percent(10.0)),
                ("nodefs.inodesFree", Value::Percent(5.0)),
                ("imagefs.available", Value::Percent(15.0)),
                ("imagefs.inodesFree", Value::Percent(5.0)),
            ]
        );
        assert!(d.iter().all(Threshold::is_hard));
        let one = thresholds(&flags(Some("nodefs.available<1Gi"), "", "", "")).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].value, Value::Quantity(1 << 30));
        // Empty: no hard threshold at all; a zero switches one off.
        assert!(thresholds(&flags(Some(""), "", "", "")).unwrap().is_empty());
        let off = thresholds(&flags(
            Some("nodefs.available<0%,imagefs.available<5%"),
            "",
            "",
            "",
        ))
        .unwrap();
        assert_eq!(off.len(), 1);
        assert_eq!(off[0].signal, Signal::ImageFsAvailable);
    }

    #[test]
    fn soft_thresholds_need_their_grace_period() {
        let t = thresholds(&flags(
            Some(""),
            "nodefs.available<20%",
            "nodefs.available=1m30s",
            "nodefs.available=500Mi",
        ))
        .unwrap();
        assert_eq!(
            t,
            [Threshold {
                signal: Signal::NodeFsAvailable,
                value: Value::Percent(20.0),
                grace: Duration::from_secs(90),
                min_reclaim: Some(Value::Quantity(500 << 20)),
            }]
        );
        assert_eq!(
            thresholds(&flags(Some(""), "nodefs.available<20%", "", "")).unwrap_err(),
            ThresholdError::NoGrace {
                signal: "nodefs.available"
            }
        );
        assert_eq!(
            thresholds(&flags(Some(""), "", "imagefs.available=1m", "")).unwrap_err(),
            ThresholdError::GraceWithoutSoft {
                signal: "imagefs.available"
            }
        );
    }

    #[test]
    fn bad_statements_name_what_is_wrong() {
        for (input, want) in [
            ("nodefs.available>10%", "nodefs.available>10%"),
            ("disk.available<10%", "disk.available"),
            ("nodefs.available<110%", "110%"),
            ("nodefs.available<lots", "lots"),
            ("nodefs.available<1%,nodefs.available<2%", "twice"),
        ] {
            let e = thresholds(&flags(Some(input), "", "", ""))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
    }

    #[test]
    fn values_against_capacity_and_quantities_as_kubernetes_prints_them() {
        assert_eq!(Value::Percent(10.0).of(1000), 100);
        assert_eq!(Value::Quantity(7).of(1000), 7);
        assert_eq!(format_quantity(10 << 20, false), "10Mi");
        assert_eq!(format_quantity(1536 * 1024, false), "1536Ki");
        assert_eq!(format_quantity(1000, false), "1000");
        assert_eq!(format_quantity(4096, true), "4096");
    }
}
