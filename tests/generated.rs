//! The completions and man pages in `dist/` are the ones the clap definitions render
//! today (regenerate with `cargo run --bin spirit-gen -- dist`), and they cover every
//! subcommand.

use std::path::Path;

#[test]
fn dist_completions_and_man_pages_are_up_to_date() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    let files = spirit::cli::gen::render().expect("render");
    assert!(files.len() >= 8, "too few generated files: {}", files.len());
    let mut stale = Vec::new();
    for (rel, bytes) in &files {
        match std::fs::read(dist.join(rel)) {
            Ok(old) if old == *bytes => {}
            _ => stale.push(rel.display().to_string()),
        }
    }
    assert!(
        stale.is_empty(),
        "stale or missing in dist/ (run `cargo run --bin spirit-gen -- dist`): {stale:?}"
    );
}

#[test]
fn every_subcommand_is_in_completions_and_man_page() {
    let files = spirit::cli::gen::render().expect("render");
    let get = |name: &str| {
        let (_, b) = files
            .iter()
            .find(|(p, _)| p.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not generated"));
        String::from_utf8_lossy(b).into_owned()
    };
    let (bash, zsh, fish, man) = (
        get("bash/spirit"),
        get("_spirit"),
        get("spirit.fish"),
        get("spirit.1"),
    );
    for sub in [
        "dump", "restore", "show", "check", "plugins", "jobs", "peers", "migrate",
    ] {
        for (what, text) in [
            ("bash", &bash),
            ("zsh", &zsh),
            ("fish", &fish),
            ("man", &man),
        ] {
            assert!(
                text.contains(sub),
                "{what} completion/man page lacks `{sub}`"
            );
        }
        get(&format!("spirit-{sub}.1"));
    }
    for opt in ["--log-file", "--json", "--leave-running", "--own-exit-code"] {
        assert!(bash.contains(opt), "bash completion lacks {opt}");
    }
    assert!(get("spiritd.8").contains("show\\-key"));
    assert!(get("bash/spiritd").contains("--state-dir"));
}

#[test]
fn help_documents_the_exit_codes_and_own_exit_code() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spirit"))
        .arg("--help")
        .output()
        .expect("spirit --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Exit codes",
        "20 spiritd not reachable",
        "22 bad request",
        "--own-exit-code",
        "--log-file",
    ] {
        assert!(
            help.contains(needle),
            "spirit --help lacks {needle:?}:\n{help}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spirit"))
        .args(["restore", "--help"])
        .output()
        .expect("spirit restore --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--own-exit-code") && help.contains("--json"),
        "{help}"
    );
}
