use std::io::IsTerminal;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,weir::udf=info,openraft=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = weir::cli::Cli::parse();
    // A node outlives whoever started it, and its output is only a log:
    // a closed pipe must not end it.
    if !matches!(cli.command, weir::cli::Command::Node { .. }) {
        restore_sigpipe();
    }
    match weir::cli::main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, so printing to a closed pipe (`weir job status |
/// head -2`) would panic. Unix tools end quietly instead: the default action.
/// Client traffic is UDP (QUIC), which never raises SIGPIPE.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called in `main` before any other thread exists;
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
