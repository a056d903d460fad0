//! `depot man`: manual pages from the command-line definitions, with the
//! environment variables the configuration reads.

use std::path::Path;

use clap::CommandFactory;

use crate::{Cli, Failure, emit, io_cause};

/// `depot man`: the page on standard output, or every page into `dir`.
pub fn man(dir: Option<&Path>) -> Result<(), Failure> {
    let cmd = Cli::command();
    let page = man_page(cmd.clone()).map_err(|e| e.to_string())?;
    match dir {
        Some(dir) => {
            let fail = |e: std::io::Error| format!("{}: {}", dir.display(), io_cause(&e));
            std::fs::create_dir_all(dir).map_err(fail)?;
            clap_mangen::generate_to(cmd, dir).map_err(fail)?;
            // The main page again, with the environment it reads.
            std::fs::write(dir.join("depot.1"), page).map_err(fail)?;
            Ok(())
        }
        None => Ok(emit(String::from_utf8_lossy(&page).trim_end())?),
    }
}

/// depot(1): clap's page plus an ENVIRONMENT section naming every variable.
fn man_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    use clap_mangen::roff::{Roff, bold, roman};
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    let mut env = Roff::new();
    env.control("SH", ["ENVIRONMENT"]);
    env.text([roman(
        "Each configuration key can be set by a variable: the file (--config) is read first, \
         then the variables, then the command-line flags.",
    )]);
    let vars = [
        ("DEPOT_SERVER", "the server the client commands talk to".to_string()),
        ("DEPOT_CONFIG", "the configuration file".to_string()),
    ];
    let keys = depot::config::ENV_VARS.iter().map(|(var, key)| (*var, format!("sets {key}")));
    for (var, what) in vars.into_iter().chain(keys) {
        env.control("TP", []);
        env.text([bold(var)]);
        env.text([roman(what)]);
    }
    env.control("TP", []);
    env.text([bold("NO_COLOR")]);
    env.text([roman("when set, log lines carry no colour codes even on a terminal")]);
    let text = String::from_utf8_lossy(&page).into_owned();
    let at = text.find("\n.SH VERSION").map_or(text.len(), |i| i + 1);
    Ok(format!("{}{}{}", &text[..at], env.to_roff(), &text[at..]).into_bytes())
}
