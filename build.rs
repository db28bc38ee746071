//! Build script: rebuild when migrations change (sqlx embeds them), and with the `tch` feature
//! record PyTorch's library directory as an rpath so that the binary finds libtorch without
//! `LD_LIBRARY_PATH`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
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
