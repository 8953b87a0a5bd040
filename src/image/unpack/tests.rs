//! Unpack tests on crafted archives (names are written raw, so `..` and absolute paths can be
//! expressed even though `tar::Header::set_path` refuses them).

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use tar::Header;

use super::*;
use std::fs;
use std::path::PathBuf;

use tar::EntryType;

enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
}

fn raw_header(name: &str, kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(1234);
    h.set_gid(5678);
    h.set_mtime(1_000_000);
    h
}

fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (mut h, data): (Header, &[u8]) = match e {
            E::Dir(n, m) => (raw_header(n, EntryType::Directory, 0, *m), b""),
            E::File(n, d, m) => (raw_header(n, EntryType::Regular, d.len() as u64, *m), d),
            E::Symlink(n, t) | E::Hardlink(n, t) => {
                let kind = if matches!(e, E::Symlink(..)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                };
                let mut h = raw_header(n, kind, 0, 0o777);
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
                (h, b"")
            }
            E::Fifo(n) => (raw_header(n, EntryType::Fifo, 0, 0o640), b""),
        };
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A scratch area: `<tmp>/outside` (with a victim file) next to `<tmp>/rootfs`.
struct Scratch {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn scratch() -> Scratch {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rootfs");
    let outside = tmp.path().join("outside");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"original").unwrap();
    fs::create_dir(outside.join("dir")).unwrap();
    Scratch {
        root,
        outside,
        _tmp: tmp,
    }
}

/// Every path under `dir` with its type, mode and content — to show nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.insert(p.clone(), (m.mode(), content));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

fn apply(root: &Path, entries: &[E]) -> Result<u64, UnpackError> {
    apply_layer(&layer(entries)[..], root)
}

#[test]
fn unpacks_files_dirs_links_and_metadata() {
    let s = scratch();
    apply(
        &s.root,
        &[
            E::Dir("./", 0o755),
            E::Dir("bin/", 0o755),
            E::File("bin/busybox", b"ELF", 0o4755),
            E::Symlink("bin/sh", "busybox"),
            E::Hardlink("bin/ls", "bin/busybox"),
            E::File("etc/deep/implicit", b"x", 0o600), // parents not in the archive
            E::Fifo("run/fifo"),
        ],
    )
    .unwrap();
    let bb = fs::symlink_metadata(s.root.join("bin/busybox")).unwrap();
    assert_eq!(
        bb.mode() & 0o7777,
        0o4755,
        "setuid kept (chmod after chown)"
    );
    assert_eq!((bb.uid(), bb.gid()), (1234, 5678));
    assert_eq!(bb.mtime(), 1_000_000);
    assert_eq!(
        fs::read_link(s.root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let sh = fs::symlink_metadata(s.root.join("bin/sh")).unwrap();
    assert_eq!((sh.uid(), sh.mtime()), (1234, 1_000_000));
    let ls = fs::symlink_metadata(s.root.join("bin/ls")).unwrap();
    assert_eq!(ls.ino(), bb.ino());
    assert_eq!(
        fs::metadata(s.root.join("bin")).unwrap().mtime(),
        1_000_000,
        "dir mtime set last"
    );
    assert_eq!(
        fs::metadata(s.root.join("etc/deep")).unwrap().mode() & 0o7777,
        0o755
    );
    assert_eq!(fs::read(s.root.join("etc/deep/implicit")).unwrap(), b"x");
    assert!(fs::symlink_metadata(s.root.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn whiteouts_remove_lower_entries_only() {
    let s = scratch();
    apply(
        &s.root,
        &[
            E::File("a/x", b"1", 0o644),
            E::File("a/y", b"2", 0o644),
            E::Dir("gone/", 0o755),
            E::File("gone/f", b"", 0o644),
        ],
    )
    .unwrap();
    apply(
        &s.root,
        &[
            E::File("a/new", b"3", 0o644),
            E::File("a/.wh.x", b"", 0o644),
            E::File("a/.wh.new", b"", 0o644), // same layer: must not remove a/new
            E::File(".wh.gone", b"", 0o644),
            E::File("nothere/.wh.z", b"", 0o644), // parent absent: no-op, not created
        ],
    )
    .unwrap();
    assert!(!s.root.join("a/x").exists());
    assert!(s.root.join("a/y").exists());
    assert!(s.root.join("a/new").exists());
    assert!(!s.root.join("gone").exists());
    assert!(!s.root.join("nothere").exists());
    assert!(!s.root.join("a/.wh.x").exists());
}

#[test]
fn opaque_directory_hides_lower_content_but_not_same_layer() {
    let s = scratch();
    apply(
        &s.root,
        &[
            E::File("d/old", b"", 0o644),
            E::File("d/sub/old2", b"", 0o644),
            E::File("keep/k", b"", 0o644),
        ],
    )
    .unwrap();
    apply(
        &s.root,
        &[
            E::Dir("d/", 0o700),
            E::File("d/new", b"", 0o644),
            E::File("d/sub/new2", b"", 0o644),
            E::File("d/.wh..wh..opq", b"", 0o644), // after same-layer entries on purpose
        ],
    )
    .unwrap();
    assert!(!s.root.join("d/old").exists());
    assert!(
        !s.root.join("d/sub/old2").exists(),
        "lower content of a kept subdir is hidden too"
    );
    assert!(s.root.join("d/new").exists());
    assert!(s.root.join("d/sub/new2").exists());
    assert!(s.root.join("keep/k").exists());
    assert_eq!(
        fs::metadata(s.root.join("d")).unwrap().mode() & 0o7777,
        0o700
    );
}

#[test]
fn entries_replace_paths_of_another_type() {
    let s = scratch();
    apply(
        &s.root,
        &[
            E::File("p", b"file", 0o644),
            E::File("q/inner", b"", 0o644),
            E::Symlink("r", "/etc"),
            E::File("keepdir/lower", b"", 0o644),
        ],
    )
    .unwrap();
    apply(
        &s.root,
        &[
            E::Dir("p/", 0o755),
            E::File("q", b"now a file", 0o644),
            E::File("r", b"now a file", 0o644),
            E::Dir("keepdir/", 0o711),
        ],
    )
    .unwrap();
    assert!(fs::symlink_metadata(s.root.join("p")).unwrap().is_dir());
    assert_eq!(fs::read(s.root.join("q")).unwrap(), b"now a file");
    assert!(fs::symlink_metadata(s.root.join("r")).unwrap().is_file());
    assert!(
        s.root.join("keepdir/lower").exists(),
        "dir over dir keeps contents"
    );
    assert_eq!(
        fs::metadata(s.root.join("keepdir")).unwrap().mode() & 0o7777,
        0o711
    );
}

#[test]
fn hardlinks_stay_inside_the_rootfs() {
    let s = scratch();
    let before = snapshot(&s.outside);
    let outside = s.outside.to_str().unwrap();
    apply(
        &s.root,
        &[
            E::File("victim", b"inner", 0o644),
            E::Hardlink("abs", "/victim"),
        ],
    )
    .unwrap();
    assert_eq!(
        fs::read(s.root.join("abs")).unwrap(),
        b"inner",
        "absolute target is rootfs-relative"
    );

    let err = apply(&s.root, &[E::Hardlink("up", "../outside/victim")]).unwrap_err();
    assert!(matches!(err, UnpackError::Unsafe { .. }), "{err}");
    // An absolute host path names a path inside the rootfs, which does not exist.
    let err = apply(
        &s.root,
        &[E::Hardlink("host", &format!("{outside}/victim"))],
    )
    .unwrap_err();
    assert!(matches!(err, UnpackError::Unsafe { .. }), "{err}");
    // Through a symlinked parent: resolved inside the rootfs, not on the host.
    let err = apply(
        &s.root,
        &[E::Symlink("out", outside), E::Hardlink("h2", "out/victim")],
    )
    .unwrap_err();
    assert!(matches!(err, UnpackError::Unsafe { .. }), "{err}");
    // A hardlink to a symlink pointing outside links the symlink itself.
    apply(
        &s.root,
        &[
            E::Symlink("sl", &format!("{outside}/victim")),
            E::Hardlink("h3", "sl"),
        ],
    )
    .unwrap();
    assert!(fs::symlink_metadata(s.root.join("h3"))
        .unwrap()
        .file_type()
        .is_symlink());
    // Writing to the hardlinked path of a lower layer replaces it, it does not write through.
    apply(&s.root, &[E::File("h3", b"pwned", 0o644)]).unwrap();
    assert_eq!(snapshot(&s.outside), before);
}

#[test]
fn dotdot_refused_and_absolute_paths_contained() {
    let s = scratch();
    let before = snapshot(&s.outside);
    for name in [
        "../outside/victim",
        "a/../../outside/victim",
        "a/b/../../../x",
    ] {
        let err = apply(&s.root, &[E::File(name, b"pwned", 0o644)]).unwrap_err();
        assert!(matches!(err, UnpackError::Unsafe { .. }), "{name}: {err}");
    }
    let abs = format!("{}/victim", s.outside.display());
    apply(
        &s.root,
        &[
            E::File(&abs, b"contained", 0o644),
            E::File("/etc/x", b"y", 0o644),
        ],
    )
    .unwrap();
    assert_eq!(
        fs::read(s.root.join(abs.trim_start_matches('/'))).unwrap(),
        b"contained"
    );
    assert_eq!(fs::read(s.root.join("etc/x")).unwrap(), b"y");
    assert_eq!(snapshot(&s.outside), before);
}

#[test]
fn symlinked_parents_never_lead_outside() {
    let s = scratch();
    let before = snapshot(&s.outside);
    let outside = s.outside.to_str().unwrap().to_string();
    let rel_up = format!("../../../../../../../../..{outside}");
    apply(
        &s.root,
        &[
            // The classic: make a directory a symlink to the host, then write through it.
            E::Symlink("etc", "/"),
            E::File("etc/victim", b"pwned", 0o644),
            E::Symlink("abs", &outside),
            E::File("abs/victim", b"pwned", 0o644),
            E::Dir("abs/dir/", 0o777),
            E::Symlink("rel", &rel_up),
            E::File("rel/victim", b"pwned", 0o644),
            E::File("rel/.wh.dir", b"", 0o644),
            E::Symlink("loop", "loop2"),
            E::Symlink("loop2", "loop"),
        ],
    )
    .unwrap();
    // What landed, landed inside the rootfs.
    assert_eq!(fs::read(s.root.join("victim")).unwrap(), b"pwned");
    assert_eq!(
        fs::read(s.root.join(outside.trim_start_matches('/')).join("victim")).unwrap(),
        b"pwned"
    );
    // Symlinks themselves are kept verbatim.
    assert_eq!(
        fs::read_link(s.root.join("abs")).unwrap(),
        Path::new(&outside)
    );

    // Whiteouts through a symlinked parent stay inside too.
    apply(
        &s.root,
        &[
            E::File("abs/.wh.victim", b"", 0o644),
            E::File("abs/.wh.dir", b"", 0o644),
        ],
    )
    .unwrap();
    // A symlink as the final component is replaced, never written through.
    apply(
        &s.root,
        &[E::Symlink("direct", &format!("{outside}/victim"))],
    )
    .unwrap();
    apply(
        &s.root,
        &[E::File("direct", b"pwned", 0o644), E::Dir("abs/", 0o777)],
    )
    .unwrap();
    assert!(fs::symlink_metadata(s.root.join("direct"))
        .unwrap()
        .is_file());

    let err = apply(&s.root, &[E::File("loop/x", b"", 0o644)]).unwrap_err();
    assert!(matches!(err, UnpackError::Unsafe { .. }), "{err}");

    assert_eq!(snapshot(&s.outside), before);
    assert_eq!(
        fs::metadata(&s.outside).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

#[test]
fn media_types() {
    assert_eq!(
        Compression::for_media_type("application/vnd.oci.image.layer.v1.tar+gzip"),
        Ok(Compression::Gzip)
    );
    assert_eq!(
        Compression::for_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        Ok(Compression::Gzip)
    );
    assert_eq!(
        Compression::for_media_type("application/vnd.oci.image.layer.v1.tar"),
        Ok(Compression::None)
    );
    assert_eq!(
        Compression::for_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
        Ok(Compression::Zstd)
    );
    assert!(Compression::for_media_type("application/vnd.wasm.content.layer.v1+wasm").is_err());
}

#[test]
fn gzip_layer_file() {
    let s = scratch();
    let blob = s.outside.join("layer.tar.gz");
    let mut gz =
        flate2::write::GzEncoder::new(File::create(&blob).unwrap(), flate2::Compression::fast());
    io::Write::write_all(&mut gz, &layer(&[E::File("hello", b"world", 0o644)])).unwrap();
    gz.finish().unwrap();
    assert_eq!(
        apply_layer_file(&blob, Compression::Gzip, &s.root, &Options::default())
            .unwrap()
            .entries,
        1
    );
    assert_eq!(fs::read(s.root.join("hello")).unwrap(), b"world");
}
