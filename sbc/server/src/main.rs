//! `sbc`: the session border controller.
//!
//! `sbc --config FILE` runs it; `sbc check-config FILE` validates a config; `sbc lint-sip FILE...` parses captured
//! SIP messages and says what is wrong with them.
//!
//! Signals: SIGTERM drains (new calls refused, calls up left to end until `drain_deadline`, then exit 0; see
//! `sbc::drain`), a second SIGTERM or SIGINT stops at once.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "sbc", version, about = "Session border controller")]
struct Cli {
    /// The configuration file (TOML) to run with.
    #[arg(long, short, default_value = "config/sbc.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the SBC (the default).
    Run,
    /// Validate a configuration file; prints each error with its key and line, exits non-zero on any.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Parse each file as one SIP message; prints OK or the error with its line, exits non-zero if any is malformed.
    LintSip {
        /// Files holding one SIP message each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => match sbc::config::Config::load(&file) {
            Ok(_) => {
                println!("{}: OK", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Some(Command::LintSip { files }) => match sbc::lint::lint_files(&files, &mut std::io::stdout()) {
            Ok(0) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(1),
            Err(e) => {
                eprintln!("sbc lint-sip: {e}");
                ExitCode::from(2)
            }
        },
        None | Some(Command::Run) => {
            let text = match std::fs::read_to_string(&cli.config) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{}: cannot read: {e}", cli.config.display());
                    return ExitCode::from(2);
                }
            };
            let config = match sbc::config::Config::parse(&text, &cli.config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let source = sbc::reload::Source { path: cli.config.clone(), text };
            match run(config, source) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sbc: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn run(config: sbc::config::Config, source: sbc::reload::Source) -> Result<()> {
    sbc::logging::init(&config.log).context("setting up logging")?;
    // Two worker threads: the machines this runs on are small, and the driver is one task anyway.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(sbc::server::serve(config, Some(source), shutdown_signal()))
}

/// Resolves on Ctrl-C (SIGINT): the quick stop (calls ended with BYE at once). SIGTERM drains instead
/// (`sbc::drain::on_sigterm`, set up by the server).
async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("SIGINT: stopping at once");
}
