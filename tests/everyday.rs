//! What a new user meets first: --version, shell completions, an empty experiment file, a
//! `[data] dir` that is not there, an IDX file of the wrong kind.

mod common;

use common::{Workspace, stderr, stdout};

#[test]
fn version_names_the_backends_compiled_in() {
    let ws = Workspace::new();
    let out = ws.sweep(&["--version"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("sweep {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    // Read from Cargo.lock here, independently of build.rs, so a drift between what is
    // compiled and what is printed (and stored with every sweep) fails.
    let burn = locked_version("burn");
    assert!(text.contains(&format!("burn {burn};")), "{text}");
    assert_eq!(sweep::BURN_VERSION, burn);
    if cfg!(feature = "tch") {
        assert!(
            text.contains(&format!("tch {} ", locked_version("tch"))),
            "{text}"
        );
    }
    assert!(text.contains("flex"), "{text}");
    assert_eq!(text.contains("libtorch"), cfg!(feature = "tch"), "{text}");
}

/// `package`'s version in Cargo.lock.
fn locked_version(package: &str) -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let entry = format!("[[package]]\nname = \"{package}\"\nversion = \"");
    let start = lock.find(&entry).expect("package in Cargo.lock") + entry.len();
    lock[start..].split('"').next().unwrap().to_string()
}

#[test]
fn completions_are_scripts_for_each_shell() {
    let ws = Workspace::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = ws.sweep(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for command in ["predict", "compare", "completions"] {
            assert!(script.contains(command), "{shell} completes {command}");
        }
    }
    // The bash script parses.
    let script = ws.path("sweep.bash");
    std::fs::write(&script, stdout(&ws.sweep(&["completions", "bash"]))).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let bad = ws.sweep(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("possible values"), "{}", stderr(&bad));
}

#[test]
fn an_empty_experiment_file_is_an_error_with_the_smallest_example() {
    let ws = Workspace::new();
    let empty = ws.experiment("empty.toml", "# nothing yet\n\n");
    for out in [
        ws.sweep(&["validate", empty.to_str().unwrap()]),
        ws.run(&empty, &[]),
    ] {
        assert_eq!(out.status.code(), Some(2));
        let message = stderr(&out);
        assert!(message.contains("empty.toml declares nothing"), "{message}");
        assert!(
            message.contains(sweep::experiment::SMALLEST_EXPERIMENT),
            "{message}"
        );
    }
    assert!(ws.nothing_recorded(), "nothing ran");
    // The example it gives is valid.
    let smallest = ws.experiment("smallest.toml", sweep::experiment::SMALLEST_EXPERIMENT);
    let out = ws.sweep(&["validate", smallest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn validate_checks_that_the_data_directory_holds_the_files() {
    let ws = Workspace::new();
    std::fs::create_dir(ws.path("half")).unwrap();
    std::fs::copy(
        ws.data().join("train-images-idx3-ubyte.gz"),
        ws.path("half/train-images-idx3-ubyte.gz"),
    )
    .unwrap();
    for (dir, expected) in [
        ("missing", "missing is not a directory"),
        (
            "half",
            "lacks train-labels-idx1-ubyte, t10k-images-idx3-ubyte",
        ),
    ] {
        let path = ws.path(dir);
        let file = ws.experiment(
            "data.toml",
            &format!(
                "[data]\ndir = {:?}\n[grid]\narch = \"mlp\"\n",
                path.to_str().unwrap()
            ),
        );
        let out = ws.sweep(&["validate", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{dir}");
        let message = stderr(&out);
        assert!(message.contains("data.toml: [data] dir:"), "{message}");
        assert!(message.contains(expected), "{message}");
    }
    let good = ws.experiment(
        "good.toml",
        &format!(
            "[data]\ndir = {:?}\n[grid]\narch = \"mlp\"\n",
            ws.data().to_str().unwrap()
        ),
    );
    assert!(
        ws.sweep(&["validate", good.to_str().unwrap()])
            .status
            .success()
    );
}

#[test]
fn an_image_file_with_a_label_files_magic_says_so() {
    let ws = Workspace::new();
    let path = ws.data().join("train-images-idx3-ubyte.gz");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()),
        &mut bytes,
    )
    .unwrap();
    bytes[3] = 1;
    common::write_gz(&path, &bytes);
    let out = ws.run(
        &ws.experiment("e.toml", "[grid]\narch = \"mlp\"\nepochs = 1\n"),
        &[],
    );
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("train-images-idx3-ubyte.gz")
            && message.contains("magic number 00000801 is that of a label file")
            && message.contains("an image file has 00000803"),
        "{message}"
    );
}
