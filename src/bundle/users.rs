//! Users and groups of an image: its USER, and the primary and supplementary groups of a
//! uid, from the image's own /etc/passwd and /etc/group (as runc does, never the host's).

use oci_spec::image::Config as ImageConfig;

use super::BundleError;

/// The image's USER as uid/gid: numeric, or names looked up in the image's own
/// /etc/passwd and /etc/group (as runc does, never the host's).
pub fn user(
    image: Option<&ImageConfig>,
    rootfs: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<(u32, u32), BundleError> {
    let spec = image.and_then(|i| i.user().clone()).unwrap_or_default();
    if spec.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec.as_str(), None),
    };
    let bad = |what: &str| BundleError::Config(format!("image user {spec:?}: {what}"));
    let (uid, primary) = match u.parse::<u32>() {
        Ok(uid) => (
            uid,
            lookup(rootfs, "etc/passwd", |f| f[2] == u, 3).unwrap_or(0),
        ),
        Err(_) => {
            let uid = lookup(rootfs, "etc/passwd", |f| f[0] == u, 2)
                .ok_or_else(|| bad("no such user in the image's /etc/passwd"))?;
            (
                uid,
                lookup(rootfs, "etc/passwd", |f| f[0] == u, 3).unwrap_or(0),
            )
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(rootfs, "etc/group", |f| f[0] == g, 2)
                .ok_or_else(|| bad("no such group in the image's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

fn lookup(
    rootfs: &dyn Fn(&str) -> Option<Vec<u8>>,
    file: &str,
    pred: impl Fn(&[&str]) -> bool,
    field: usize,
) -> Option<u32> {
    let text = String::from_utf8(rootfs(file)?).ok()?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > field && pred(f))
        .and_then(|f| f[field].parse().ok())
}

/// The primary group of `uid` in the image's /etc/passwd.
pub fn primary_gid(uid: u32, rootfs: &dyn Fn(&str) -> Option<Vec<u8>>) -> Option<u32> {
    let u = uid.to_string();
    lookup(rootfs, "etc/passwd", |f| f[2] == u, 3)
}

/// The groups of the image's /etc/group that list the user of `uid` as a member
/// (containerd's additional gids).
pub fn member_gids(uid: u32, rootfs: &dyn Fn(&str) -> Option<Vec<u8>>) -> Vec<u32> {
    let Some(passwd) = rootfs("etc/passwd").and_then(|b| String::from_utf8(b).ok()) else {
        return Vec::new();
    };
    let u = uid.to_string();
    let Some(name) = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == u)
        .map(|f| f[0].to_string())
    else {
        return Vec::new();
    };
    let Some(group) = rootfs("etc/group").and_then(|b| String::from_utf8(b).ok()) else {
        return Vec::new();
    };
    group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() > 3 && f[3].split(',').any(|m| m == name))
        .filter_map(|f| f[2].parse().ok())
        .collect()
}
