use super::*;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hostlet-userns-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_default_pool_skips_the_host_ids_and_the_last_range() {
    let pool = Pool::from_entries(Path::new("/nonexistent"), None, None).unwrap();
    assert_eq!(pool.first, 65536);
    // 2^32 / 65536 ranges, less the first (host IDs) and the last ((uid_t)-1).
    assert_eq!(pool.capacity(), 65534);
}

#[test]
fn subid_entries_follow_the_kubelet_rules() {
    let p = Path::new("/etc/subuid");
    let text = "root:100000:65536\nhostlet:1048576:655360\nhostlet:0:65536\n";
    assert_eq!(parse_subid(p, Some(text)).unwrap(), Some((1048576, 655360)));
    assert_eq!(parse_subid(p, Some("other:65536:65536\n")).unwrap(), None);
    assert_eq!(parse_subid(p, None).unwrap(), None);
    for (bad, why) in [
        ("hostlet:100000:65536", "start is not a multiple of 65536"),
        ("hostlet:65536:1000", "count is not a multiple of 65536"),
        ("hostlet:65536", "want name:start:count"),
        ("hostlet:x:65536", "start is not a number"),
    ] {
        let e = parse_subid(p, Some(bad)).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
        assert!(e.contains("/etc/subuid"), "{e}");
    }
    let e = Pool::from_entries(p, Some((65536, 65536)), Some((131072, 65536))).unwrap_err();
    assert!(e.to_string().contains("differ"), "{e}");
    let e = Pool::from_entries(p, Some((65536, 65536)), None).unwrap_err();
    assert!(e.to_string().contains("differ"), "{e}");
}

#[test]
fn choose_takes_the_lowest_free_range() {
    let used: BTreeSet<u32> = [65536, 196608].into();
    assert_eq!(choose(65536, 4, &used), Some(131072));
    let used: BTreeSet<u32> = [65536, 131072].into();
    assert_eq!(choose(65536, 2, &used), None);
    assert_eq!(choose(65536, 0, &BTreeSet::new()), None);
}

#[test]
fn pods_get_disjoint_ranges_kept_on_disk_and_freed_with_their_directory() {
    let pods = tmp("pool");
    let pool =
        Pool::from_entries(&pods, Some((1 << 20, 3 << 16)), Some((1 << 20, 3 << 16))).unwrap();
    assert_eq!(pool.capacity(), 3);
    let a = pool.allocate(&pods.join("a")).unwrap();
    let b = pool.allocate(&pods.join("b")).unwrap();
    assert_eq!(a.host_id, 1 << 20);
    assert_eq!(b.host_id, (1 << 20) + 65536);
    assert_eq!(a.map_line(), "0 1048576 65536");
    assert_eq!(a.to_host(0), Some(1 << 20));
    assert_eq!(a.to_host(65536), None);
    // The same pod again (an agent restart, adoption): the same range.
    assert_eq!(pool.allocate(&pods.join("a")).unwrap(), a);
    // A new agent's pool reads what the pod directories hold.
    let again =
        Pool::from_entries(&pods, Some((1 << 20, 3 << 16)), Some((1 << 20, 3 << 16))).unwrap();
    assert_eq!(again.used(), [a.host_id, b.host_id].into());
    assert_eq!(again.allocate(&pods.join("a")).unwrap(), a);
    let c = again.allocate(&pods.join("c")).unwrap();
    let e = again.allocate(&pods.join("d")).unwrap_err();
    assert!(matches!(e, UsernsError::Exhausted(3)), "{e}");
    // Freed when the pod's directory goes, and reused then only.
    std::fs::remove_dir_all(pods.join("b")).unwrap();
    assert_eq!(again.allocate(&pods.join("d")).unwrap(), b);
    assert_ne!(c, b);
    std::fs::remove_dir_all(&pods).unwrap();
}

#[test]
fn create_remove_cycles_leave_the_pool_as_it_was() {
    let pods = tmp("cycles");
    let pool = Pool::from_entries(&pods, None, None).unwrap();
    let keep = pool.allocate(&pods.join("keep")).unwrap();
    let before = pool.used();
    for i in 0..100 {
        let dir = pods.join(format!("p{i}"));
        let r = pool.allocate(&dir).unwrap();
        assert_ne!(r, keep);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_eq!(pool.used(), before);
    std::fs::remove_dir_all(&pods).unwrap();
}

#[test]
fn kernel_versions_parse() {
    assert_eq!(idmap::kernel_version("6.1.0-18-amd64"), Some((6, 1)));
    assert_eq!(idmap::kernel_version("6.18.44-fc-v1272"), Some((6, 18)));
    assert_eq!(idmap::kernel_version("5.4"), Some((5, 4)));
    assert_eq!(idmap::kernel_version("x"), None);
    assert!((5, 4) < idmap::MIN_KERNEL && (6, 1) >= idmap::MIN_KERNEL);
}

#[test]
fn the_default_applies_only_where_a_user_namespace_can_be() {
    let run = |yaml: &str| {
        let mut p: k8s_openapi::api::core::v1::Pod = serde_yaml::from_str(yaml).unwrap();
        let changed = default_to_user_namespace(&mut p);
        (changed, p.spec.and_then(|s| s.host_users))
    };
    assert_eq!(run("spec: {containers: [{name: a}]}"), (true, Some(false)));
    assert_eq!(
        run("spec: {hostUsers: true, containers: [{name: a}]}"),
        (false, Some(true))
    );
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        let yaml = format!("spec: {{{host}: true, containers: [{{name: a}}]}}");
        assert_eq!(run(&yaml), (false, None), "{host}");
    }
    let privileged = "spec: {initContainers: [{name: i, securityContext: {privileged: true}}], containers: [{name: a}]}";
    assert_eq!(run(privileged), (false, None));
    assert_eq!(run("metadata: {name: x}"), (false, None));
}
