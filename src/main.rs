use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = pax_ledger::cli::Cli::parse();
    // `serve` installs it once its configuration is read (it may export spans).
    if !matches!(cli.command, pax_ledger::cli::Command::Serve(_)) {
        pax_ledger::telemetry::init_with("info", cli.log_format);
    }
    match pax_ledger::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", pax_ledger::cli::error_text(&error));
            ExitCode::FAILURE
        }
    }
}
