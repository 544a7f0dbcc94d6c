//! Client subcommands (being written).
use std::process::ExitCode;

use super::{AppendArgs, HistoryArgs};

pub async fn append(_args: AppendArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("append: not built yet")
}

pub async fn history(_args: HistoryArgs, _follow: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("history: not built yet")
}
