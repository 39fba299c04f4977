//! `cronium serve`: runs the control plane (all of it lives in `cronium-server`; this only maps flags).

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory: SQLite database, payloads, master key, admin.token
    /// [env: CRONIUM_DATA_DIR] [default: ./cronium-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address to listen on [env: CRONIUM_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// sqlite://PATH or postgres://… [env: CRONIUM_DATABASE_URL]
    /// [default: sqlite://<data dir>/cronium.db]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// Payload versions kept per event [env: CRONIUM_PAYLOAD_RETENTION] [default: 5]
    #[arg(long, value_name = "N")]
    pub payload_retention: Option<usize>,
}

/// Serves until SIGINT or SIGTERM. The master key may come from
/// `CRONIUM_MASTER_KEY` (64 hex digits); it is never a flag.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    cronium_server::serve_blocking(cronium_server::Overrides {
        data_dir: args.data_dir,
        listen: args.listen,
        database_url: args.database_url,
        payload_retention: args.payload_retention,
    })
}
