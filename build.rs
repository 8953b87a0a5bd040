//! Links the `hostlet-monitor` helper as a position-dependent executable: one monitor
//! runs per container for the container's whole life, and a PIE's relocated pages
//! (`.data.rel.ro`, `.got`: ~400 KiB of vtables and static tables here) are private to
//! every process, while a non-PIE's are filled in at link time and shared
//! (BENCHMARKS.md row 4b). The agent, `hostlet`, stays a PIE (ASLR for the daemon), with
//! its relative relocations packed (DT_RELR, glibc ≥ 2.36 as on Debian 12): as plain RELA
//! records they were ~1 MB that the loader reads at every start and that stays resident
//! (BENCHMARKS.md row 4a).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=hostlet-monitor=-no-pie");
        println!("cargo:rustc-link-arg-bin=hostlet=-Wl,-z,pack-relative-relocs");
    }
}
