use super::*;

fn obs(available: u64, capacity: u64) -> Observations {
    [(
        Signal::NodeFsAvailable,
        Observation {
            available,
            capacity,
        },
    )]
    .into()
}

fn hard(percent: f64, reclaim: Option<u64>) -> Threshold {
    Threshold {
        signal: Signal::NodeFsAvailable,
        value: Value::Percent(percent),
        grace: Duration::ZERO,
        min_reclaim: reclaim.map(Value::Quantity),
    }
}

fn soft(percent: f64, grace: u64) -> Threshold {
    Threshold {
        grace: Duration::from_secs(grace),
        ..hard(percent, None)
    }
}

#[tokio::test(start_paused = true)]
async fn hard_thresholds_act_at_once_soft_ones_after_their_grace() {
    let mut e = Evaluator::default();
    let ts = [hard(10.0, None), soft(20.0, 30)];
    let tr = Duration::from_secs(60);
    // 15% available: only the soft threshold is met, and not for long enough yet.
    let v = e.evaluate(&ts, &obs(150, 1000), tr, Instant::now());
    assert_eq!(v.conditions, [Condition::DiskPressure].into());
    assert!(v.act.is_empty());
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(e
        .evaluate(&ts, &obs(150, 1000), tr, Instant::now())
        .act
        .is_empty());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        e.evaluate(&ts, &obs(150, 1000), tr, Instant::now()).act,
        [soft(20.0, 30)]
    );
    // 5%: the hard one acts too, first.
    let v = e.evaluate(&ts, &obs(50, 1000), tr, Instant::now());
    assert_eq!(v.act, [hard(10.0, None), soft(20.0, 30)]);
    // Back over 20% for a moment resets the soft threshold's clock.
    e.evaluate(&ts, &obs(500, 1000), tr, Instant::now());
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(e
        .evaluate(&ts, &obs(150, 1000), tr, Instant::now())
        .act
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_met_threshold_holds_until_its_minimum_reclaim_is_back() {
    let mut e = Evaluator::default();
    let ts = [hard(10.0, Some(50))];
    let tr = Duration::ZERO;
    assert_eq!(
        e.evaluate(&ts, &obs(90, 1000), tr, Instant::now())
            .act
            .len(),
        1
    );
    // 120 available is over the 100 threshold, under threshold + reclaim (150).
    assert_eq!(
        e.evaluate(&ts, &obs(120, 1000), tr, Instant::now())
            .act
            .len(),
        1
    );
    assert!(e
        .evaluate(&ts, &obs(150, 1000), tr, Instant::now())
        .act
        .is_empty());
    // Once released, 120 no longer meets it.
    assert!(e
        .evaluate(&ts, &obs(120, 1000), tr, Instant::now())
        .act
        .is_empty());
    assert!(is_met(&ts[0], &obs(120, 1000), true));
    assert!(!is_met(&ts[0], &obs(120, 1000), false));
}

#[tokio::test(start_paused = true)]
async fn conditions_stay_for_the_transition_period() {
    let mut e = Evaluator::default();
    let ts = [hard(10.0, None)];
    let tr = Duration::from_secs(300);
    e.evaluate(&ts, &obs(50, 1000), tr, Instant::now());
    tokio::time::advance(Duration::from_secs(10)).await;
    let v = e.evaluate(&ts, &obs(500, 1000), tr, Instant::now());
    assert!(v.act.is_empty());
    assert_eq!(v.conditions, [Condition::DiskPressure].into());
    tokio::time::advance(Duration::from_secs(289)).await;
    let v = e.evaluate(&ts, &obs(500, 1000), tr, Instant::now());
    assert_eq!(v.conditions, [Condition::DiskPressure].into());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(e
        .evaluate(&ts, &obs(500, 1000), tr, Instant::now())
        .conditions
        .is_empty());
    // Memory and PID thresholds raise their own conditions.
    let mem = Threshold {
        signal: Signal::MemoryAvailable,
        value: Value::Quantity(100),
        grace: Duration::ZERO,
        min_reclaim: None,
    };
    let o: Observations = [(
        Signal::MemoryAvailable,
        Observation {
            available: 10,
            capacity: 1000,
        },
    )]
    .into();
    let v = e.evaluate(&[mem], &o, tr, Instant::now());
    assert_eq!(v.conditions, [Condition::MemoryPressure].into());
}

fn cand(uid: &str, priority: i32, usage: u64, request: u64) -> Candidate {
    Candidate {
        uid: uid.into(),
        priority,
        usage,
        request,
        containers: vec![ContainerUse {
            name: "c".into(),
            usage,
            request,
        }],
    }
}

#[test]
fn ranking_is_over_requests_then_priority_then_usage() {
    let mut pods = vec![
        cand("within-requests-big", 0, 900, 1000),
        cand("high-priority-over", 100, 50, 0),
        cand("low-priority-small-over", -5, 10, 0),
        cand("over-big", 0, 500, 100),
        cand("over-small", 0, 200, 100),
    ];
    rank(&mut pods);
    let order: Vec<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
    assert_eq!(
        order,
        [
            "low-priority-small-over",
            "over-big",
            "over-small",
            "high-priority-over",
            "within-requests-big"
        ]
    );
}

#[test]
fn critical_by_priority_class_or_value_only() {
    let spec = |yaml: &str| -> PodSpec { serde_yaml::from_str(yaml).unwrap() };
    assert!(is_critical(Some(&spec(
        "containers: []\npriorityClassName: system-node-critical"
    ))));
    assert!(is_critical(Some(&spec(
        "containers: []\npriorityClassName: system-cluster-critical"
    ))));
    assert!(is_critical(Some(&spec(
        "containers: []\npriority: 2000000000"
    ))));
    assert!(!is_critical(Some(&spec(
        "containers: []\npriority: 1999999999"
    ))));
    assert!(!is_critical(Some(&spec(
        "containers: []\npriorityClassName: high"
    ))));
    assert!(!is_critical(None));
}

#[test]
fn message_is_the_kubelets() {
    let t = hard(10.0, None);
    let m = message(&t, &obs(3 << 20, 100 << 20), &cand("p", 0, 5 << 20, 0));
    assert_eq!(
        m,
        "The node was low on resource: ephemeral-storage. Threshold quantity: 10Mi, available: 3Mi. \
         Container c was using 5Mi, request is 0, has larger consumption of ephemeral-storage. "
    );
    let within = message(
        &t,
        &obs(3 << 20, 100 << 20),
        &cand("p", 0, 1 << 20, 2 << 20),
    );
    assert_eq!(
        within,
        "The node was low on resource: ephemeral-storage. Threshold quantity: 10Mi, available: 3Mi. "
    );
}
