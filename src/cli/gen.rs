//! Shell completions (bash, zsh, fish) and man pages (`spirit(1)`, `spiritd(8)`)
//! rendered from the clap definitions in [`super::args`]; `spirit-gen DIR` writes them
//! under `DIR/completions` and `DIR/man`, and a test checks the copies in `dist/` match.

use super::args::{Cli, SpiritdArgs};
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// Every generated file: its path under the output directory and its bytes.
pub fn render() -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for (cmd, name) in [
        (Cli::command(), "spirit"),
        (SpiritdArgs::command(), "spiritd"),
    ] {
        for (shell, file) in [
            (Shell::Bash, name.to_string()),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name, &mut buf);
            let dir = format!("completions/{shell}");
            out.push((Path::new(&dir).join(file), buf));
        }
    }
    let spirit = Cli::command();
    out.push(("man/spirit.1".into(), man(spirit.clone(), "1")?));
    // One page per subcommand (spirit-dump(1)...), as git does: the options live there.
    for sub in spirit.get_subcommands() {
        let name = format!("spirit-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .version(env!("CARGO_PKG_VERSION"));
        let page = man(sub, "1")?;
        out.push((format!("man/{name}.1").into(), page));
    }
    out.push(("man/spiritd.8".into(), man(SpiritdArgs::command(), "8")?));
    Ok(out)
}

fn man(cmd: clap::Command, section: &'static str) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(section)
        .date("")
        .render(&mut buf)?;
    Ok(buf)
}

/// Write every generated file under `dir`.
pub fn write_all(dir: &Path) -> std::io::Result<()> {
    for (rel, bytes) in render()? {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, bytes)?;
    }
    Ok(())
}
