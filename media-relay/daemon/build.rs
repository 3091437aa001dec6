//! Compiles the XDP programs in `ebpf/src/*.bpf.c` with clang into `OUT_DIR`; `src/xdp/loader.rs` embeds the
//! objects. No object is committed. `CLANG` overrides the compiler; `-g` is required (aya needs the BTF).

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const PROGRAMS: &[&str] = &["relay_xdp", "pass", "reference_relay", "gen", "sink"];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let ebpf = manifest.join("../../ebpf");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed={}", ebpf.display());
    for dir in ["include", "src"] {
        for entry in std::fs::read_dir(ebpf.join(dir)).expect("read ebpf/ sources").flatten() {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }

    let mut includes = vec![ebpf.join("include"), ebpf.join("src")];
    // The uapi headers include <asm/types.h>, which Debian keeps under the multiarch directory only.
    if let Some(dir) = multiarch_include(&clang) {
        includes.push(dir);
    }
    for name in PROGRAMS {
        let src = ebpf.join("src").join(format!("{name}.bpf.c"));
        let obj = out.join(format!("{name}.bpf.o"));
        let mut cmd = Command::new(&clang);
        cmd.args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-Wno-unused-parameter"]);
        for dir in &includes {
            cmd.arg("-I").arg(dir);
        }
        cmd.arg("-c").arg(&src).arg("-o").arg(&obj);
        let status = match cmd.status() {
            Ok(status) => status,
            Err(e) => panic!(
                "cannot run `{clang}` to build the XDP program {}: {e}. The eBPF side needs clang (and libbpf \
                 headers): run `make deps` as root (Debian: apt-get install clang llvm libbpf-dev), or set \
                 CLANG=/path/to/clang",
                src.display()
            ),
        };
        assert!(status.success(), "`{clang}` failed to compile {} ({status}); see the errors above", src.display());
    }
}

fn multiarch_include(clang: &str) -> Option<PathBuf> {
    let out = Command::new(clang).arg("-print-multiarch").output().ok()?;
    let triple = String::from_utf8(out.stdout).ok()?;
    let dir = Path::new("/usr/include").join(triple.trim());
    (!triple.trim().is_empty() && dir.is_dir()).then_some(dir)
}
