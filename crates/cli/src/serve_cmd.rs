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

    /// The cronium-runner binary [env: CRONIUM_RUNNER]
    /// [default: next to this program, else on PATH]
    #[arg(long, value_name = "PATH")]
    pub runner: Option<PathBuf>,

    /// Run local jobs in a sandbox: none or bubblewrap [env: CRONIUM_SANDBOX]
    /// [default: none]. Sandboxed jobs get no network unless
    /// CRONIUM_SANDBOX_NETWORK=true.
    #[arg(long, value_name = "KIND")]
    pub sandbox: Option<String>,

    /// Jobs this node runs at once [env: CRONIUM_MAX_JOBS] [default: 8]
    #[arg(long, value_name = "N")]
    pub max_jobs: Option<usize>,

    /// Delete finished jobs and their logs after this long (the newest 100
    /// per event stay, see CRONIUM_JOB_KEEP) [env: CRONIUM_JOB_RETENTION] [default: 30d]
    #[arg(long, value_name = "DURATION")]
    pub job_retention: Option<String>,

    /// Let HTTP events reach this network or host although it is loopback,
    /// private or link-local (refused by default); repeatable, e.g.
    /// 10.0.0.0/8 or hooks.internal [env: CRONIUM_HTTP_ALLOW, comma-separated]
    #[arg(long, value_name = "CIDR|HOST")]
    pub http_allow: Vec<String>,

    /// Where people reach this server, e.g. https://cron.example.com: links
    /// in notifications, the one origin web forms may come from, and (when
    /// https) Secure session cookies [env: CRONIUM_PUBLIC_URL]
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// Serve HTTPS with this certificate (PEM, the chain after it), with
    /// --tls-key; reloaded when the file changes or on SIGHUP
    /// [env: CRONIUM_TLS_CERT] [default: plain HTTP]
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM) [env: CRONIUM_TLS_KEY]
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Believe X-Forwarded-For/-Proto and Forwarded from this proxy address
    /// or network (from no one by default); repeatable
    /// [env: CRONIUM_TRUSTED_PROXIES, comma-separated]
    #[arg(long = "trusted-proxy", value_name = "ADDR|CIDR")]
    pub trusted_proxies: Vec<String>,

    /// With PostgreSQL, do not LISTEN for other servers' wake-ups: find work
    /// queued and log lines stored elsewhere by polling (every 250-500 ms).
    /// For a database reached through PgBouncer in transaction mode, which
    /// cannot carry LISTEN [env: CRONIUM_POLL_ONLY=true]
    #[arg(long)]
    pub poll_only: bool,
}

/// Serves until SIGINT or SIGTERM (SIGHUP reloads the TLS certificate). The master key may come from
/// `CRONIUM_MASTER_KEY` (64 hex digits); it is never a flag.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    cronium_server::serve_blocking(cronium_server::Overrides {
        data_dir: args.data_dir,
        listen: args.listen,
        database_url: args.database_url,
        payload_retention: args.payload_retention,
        runner: args.runner,
        sandbox: args.sandbox,
        max_jobs: args.max_jobs,
        job_retention: args.job_retention,
        http_allow: args.http_allow,
        public_url: args.public_url,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        trusted_proxies: args.trusted_proxies,
        poll_only: args.poll_only,
    })
}
