//! Manifest decoding and validation never panic, whatever the bytes: as a file (Pod,
//! ConfigMap or Secret), as a URL body (Pod or PodList), strict or not, and when the
//! problems are located in the text; a decoded pod's references resolve against an object.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run decode <scratch-corpus> ../testdata/manifests/good ../testdata/manifests/bad`
#![no_main]

use std::path::Path;

use hostlet::manifest::{self, Origin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let strict = data.first().is_some_and(|b| b & 1 == 1);
    let origin = Origin::File(Path::new("/etc/kubernetes/manifests/fuzz.yaml").into());
    let text = String::from_utf8_lossy(data);
    match manifest::decode_with_origin(&origin, data, "Node-1", strict) {
        Ok(d) => {
            for w in &d.warnings {
                let _ = manifest::Diagnostic::for_field(&text, w).to_string();
            }
            // What was accepted serializes (it is written to the pod record).
            serde_json::to_vec(&d.pod.pod).expect("an accepted pod serializes");
        }
        Err(e) => {
            for d in e.diagnostics(data) {
                let _ = d.to_string();
            }
        }
    }
    match manifest::decode_manifest(&origin, data, "node-1", strict) {
        Ok(manifest::Manifest::Object(o)) => {
            let _ = format!("{:?}", o.object);
            let set = manifest::ObjectSet::new([std::sync::Arc::new(o.object)]);
            let _ = set.redacted();
        }
        Ok(manifest::Manifest::Pod(d)) => {
            let _ = manifest::refs::check(&d.pod.pod, &manifest::ObjectSet::default());
        }
        Err(e) => {
            for d in e.diagnostics(data) {
                let _ = d.to_string();
            }
        }
    }
    match manifest::decode_url_body("http://127.0.0.1/pods", data, "node-1", strict) {
        Ok(pods) => assert!(!pods.is_empty() || text.contains("PodList")),
        Err(e) => {
            let _ = e.diagnostics(data);
        }
    }
    // The locator on arbitrary text and paths taken from it.
    for field in text.lines().take(4) {
        let _ = manifest::locate(&text, field.trim());
    }
});
