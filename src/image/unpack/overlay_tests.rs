//! Overlay-mode unpacking, limits and verification (see unpack_tests.rs for the safety rules).

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use tar::Header;

use super::*;
use std::fs;

use crate::image::fsutil::lgetxattr;
use tar::EntryType;

fn entry(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: EntryType, data: &[u8]) {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    if matches!(kind, EntryType::Char | EntryType::Block) {
        h.set_device_major(8).unwrap();
        h.set_device_minor(0).unwrap();
    }
    b.append_data(&mut h, name, data).unwrap();
}

fn overlay() -> Options {
    Options {
        overlay: true,
        ..Options::default()
    }
}

#[test]
fn overlay_mode_writes_overlayfs_whiteouts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, "etc/", EntryType::Directory, b"");
    entry(&mut b, "etc/.wh.shadow", EntryType::Regular, b"");
    entry(&mut b, "var/cache/.wh..wh..opq", EntryType::Regular, b"");
    entry(&mut b, "var/cache/new", EntryType::Regular, b"kept");
    entry(&mut b, "deep/er/.wh.gone", EntryType::Regular, b""); // parents absent in this layer
    entry(&mut b, "dev/sda", EntryType::Block, b"");
    entry(&mut b, "dev/mem", EntryType::Char, b"");
    let stats = apply_layer_with(&b.into_inner().unwrap()[..], tmp.path(), &overlay()).unwrap();
    assert_eq!(stats.entries, 7);
    let wh = fs::symlink_metadata(tmp.path().join("etc/shadow")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "0/0 whiteout"
    );
    let wh = fs::symlink_metadata(tmp.path().join("deep/er/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        lgetxattr(&tmp.path().join("var/cache"), b"trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(fs::read(tmp.path().join("var/cache/new")).unwrap(), b"kept");
    assert!(!tmp.path().join("var/cache/.wh..wh..opq").exists());
    // Device nodes are never created.
    assert!(fs::symlink_metadata(tmp.path().join("dev/sda")).is_err());
    assert!(fs::symlink_metadata(tmp.path().join("dev/mem")).is_err());
}

#[test]
fn max_size_and_diff_id_are_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, "big", EntryType::Regular, &[7u8; 10_000]);
    let tar = b.into_inner().unwrap();
    let opts = Options {
        max_size: 8_000,
        ..overlay()
    };
    let e = apply_layer_with(&tar[..], &tmp.path().join("x"), &opts).unwrap_err();
    assert!(matches!(e, UnpackError::TooLarge { limit: 8_000 }), "{e}");

    let good = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
    let ok = Options {
        diff_id: Some(good),
        ..overlay()
    };
    let dir = tmp.path().join("ok");
    fs::create_dir(&dir).unwrap();
    assert_eq!(apply_layer_with(&tar[..], &dir, &ok).unwrap().entries, 1);
    let bad = Options {
        diff_id: Some(format!("sha256:{}", "0".repeat(64))),
        ..overlay()
    };
    let dir = tmp.path().join("bad");
    fs::create_dir(&dir).unwrap();
    let e = apply_layer_with(&tar[..], &dir, &bad).unwrap_err();
    assert!(matches!(e, UnpackError::DiffId { .. }), "{e}");
}

#[test]
fn zstd_layer_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, "hello", EntryType::Regular, b"zstd world");
    let tar = b.into_inner().unwrap();
    let blob = tmp.path().join("layer.tar.zst");
    fs::write(&blob, zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let opts = Options {
        diff_id: Some(format!("sha256:{}", hex::encode(Sha256::digest(&tar)))),
        ..overlay()
    };
    apply_layer_file(&blob, Compression::Zstd, &root, &opts).unwrap();
    assert_eq!(fs::read(root.join("hello")).unwrap(), b"zstd world");
}
