//! Signature policy, registries configuration and signature parsing never panic, whatever
//! the bytes: policy.json (and, when it parses, the scope lookup and an evaluation for a
//! reference taken from the input), registries.conf (and, when it parses, the entry for that
//! reference and its mirror sources), cosign `.sig` manifests, simple-signing payloads and
//! image references.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run trust <scratch-corpus> ../testdata/policy ../testdata/registries`
#![no_main]

use std::path::Path;

use hostlet::image::mirrors::RegistriesConf;
use hostlet::image::trust::{self, cosign, Policy};
use hostlet::image::Named;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let reference = text
        .lines()
        .next()
        .and_then(|l| Named::parse(l.trim()).ok())
        .unwrap_or_else(|| Named::parse("registry.example.com/ns/app:v1").expect("valid"));
    // Relative key paths resolve under a directory that does not exist: never read.
    if let Ok(policy) = Policy::parse(data, Path::new("/nonexistent-fuzz")) {
        let (scope, reqs) = policy.requirements_for(&reference);
        let sig = cosign::Signature {
            payload: data.to_vec(),
            signature: text.to_string(),
        };
        let _ = trust::evaluate(reqs, &scope, &reference, "sha256:00", &[sig], "");
    }
    if let Ok(conf) = RegistriesConf::parse(Path::new("/fuzz/registries.conf"), &text) {
        if let Some(entry) = conf.find(&reference.name) {
            let mut whole = reference.name.clone();
            if let Some(tag) = &reference.tag {
                whole = format!("{whole}:{tag}");
            }
            if let Some(digest) = &reference.digest {
                whole = format!("{whole}@{digest}");
            }
            let _ = entry.sources(&whole, reference.digest.is_some());
        }
    }
    let _ = cosign::signature_layers(data);
    let _ = cosign::parse_payload(data);
    let _ = trust::policy::scopes(&reference);
    for line in text.lines().take(4) {
        let _ = Named::parse(line);
    }
});
