//! Link settings of the `astarte-agent` binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Relative relocations packed as DT_RELR instead of 24-byte RELA entries: about 10,000
    // entries (vtables, string tables), over 200 KiB of the stripped binary, become a few KiB
    // (issue "Fits the smallest boards"). glibc 2.36 or later loads them; GNU ld adds the
    // GLIBC_ABI_DT_RELR version needed, so an older glibc refuses the binary by name. Linkers
    // without the option (GNU ld before 2.38) ignore it with a warning.
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
