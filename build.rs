//! Build script: rebuild when migrations change (sqlx embeds them); take the burn and tch
//! versions from `Cargo.lock` (printed by `--version`, stored with every sweep), so they cannot
//! drift from what is compiled in; and with the `tch` feature record PyTorch's library directory
//! as an rpath so that the binary finds libtorch without `LD_LIBRARY_PATH`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock")
        .expect("Cargo.lock: the build reads burn's and tch's versions from it; run `cargo generate-lockfile`");
    for (package, var) in [("burn", "SWEEP_BURN_VERSION"), ("tch", "SWEEP_TCH_VERSION")] {
        let version = locked_version(&lock, package)
            .unwrap_or_else(|| panic!("Cargo.lock lists no package {package:?}"));
        println!("cargo:rustc-env={var}={version}");
    }
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    let lib = match std::env::var("LIBTORCH") {
        Ok(root) => Some(format!("{root}/lib")),
        Err(_) => {
            // torch-sys finds PyTorch the same way: `python` inside a virtualenv, else `python3`.
            let python = if std::env::var_os("VIRTUAL_ENV").is_some() {
                "python"
            } else {
                "python3"
            };
            Command::new(python)
                .args([
                    "-c",
                    "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
                ])
                .output()
                .ok()
                .filter(|out| out.status.success())
                .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
    };
    match lib {
        Some(dir) if !dir.is_empty() => println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}"),
        _ => println!(
            "cargo:warning=cannot find PyTorch's lib directory; set LD_LIBRARY_PATH to it to run"
        ),
    }
}

/// The version `Cargo.lock` records for `package` (its `[[package]]` entry: a `name` line
/// followed by a `version` line).
fn locked_version(lock: &str, package: &str) -> Option<String> {
    let name = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name {
            let version = lines.next()?.trim().strip_prefix("version = ")?;
            return Some(version.trim_matches('"').to_string());
        }
    }
    None
}
