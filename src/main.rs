use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = pax_ledger::cli::Cli::parse();
    pax_ledger::telemetry::init("info");
    match pax_ledger::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            // The chain of causes, each once: many errors already repeat their source's text.
            let mut message = error.to_string();
            for cause in error.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
