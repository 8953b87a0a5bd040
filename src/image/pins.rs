//! Pins: digests a pull, an import or an update is working with, which GC must not remove
//! meanwhile.

use super::*;

impl ImageStore {
    /// Protects `digests` from GC until the guard is dropped.
    pub(super) fn pin(&self, digests: impl IntoIterator<Item = String>) -> PinGuard {
        let digests: Vec<String> = digests.into_iter().collect();
        let mut pins = self.pins.lock().expect("pins");
        for d in &digests {
            *pins.entry(d.clone()).or_default() += 1;
        }
        PinGuard {
            pins: self.pins.clone(),
            digests,
        }
    }

    pub(super) fn is_pinned(&self, digest: &str) -> bool {
        self.pins.lock().expect("pins").contains_key(digest)
    }
}

pub(super) struct PinGuard {
    pins: Arc<Mutex<HashMap<String, usize>>>,
    digests: Vec<String>,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut pins = self.pins.lock().expect("pins");
        for d in &self.digests {
            if let Some(n) = pins.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(d);
                }
            }
        }
    }
}
