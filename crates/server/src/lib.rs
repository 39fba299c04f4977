//! Cronium's control plane: `cronium serve` — start-up wiring, the REST API (with its auth and API tokens) and the web UI over the engine, and the user commands run on the server's host.
//!
//! [`start`] does everything `cronium serve` does up to serving (data dir,
//! master key, database and migrations, admin token, payload sweep, the
//! scheduler, worker and delivery loops, listen)
//! and returns a [`Running`] server; [`run`] adds signal handling. The API
//! tests call [`start`], so they exercise the same code path as production.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use cronium_core::Role;
use cronium_store::{AuditEntry, NewToken, Store, User};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod api;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod passwords;
pub mod state;
pub mod tls;
pub mod tokens;
pub mod ui;
pub mod users;

pub use config::{Config, Overrides};
pub use cronium_engine::now;
use cronium_engine::{files, payloads, secrets};

/// Where the first-start admin token is written, in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Where the master key lives unless `CRONIUM_MASTER_KEY` is set.
pub const MASTER_KEY_FILE: &str = "master.key";
/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The plain-HTTP listener: TCP, sending small writes at once. With
/// Nagle's algorithm on, a log line or the `end` event written to an event
/// stream right after the response's head waited for the client's delayed
/// ACK of that head: 40 ms on Linux, most of what `cronium event run
/// --follow` of a short job took.
pub(crate) struct PlainListener(TcpListener);

impl axum::serve::Listener for PlainListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        (stream, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A server that is accepting requests.
pub struct Running {
    local_addr: SocketAddr,
    data_dir: PathBuf,
    shutdown: CancellationToken,
    /// Ends the workers' drain at once (a second stop signal).
    hand_back: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    /// The workers: after the shutdown they drain, then this ends.
    workers: JoinHandle<()>,
    tls: Option<std::sync::Arc<tls::Certificates>>,
}

impl Running {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The data dir, made absolute.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Reads the TLS certificate and key again (what SIGHUP does); on
    /// error the pair in use stays. Without TLS there is nothing to do.
    pub fn reload_tls(&self) -> Result<()> {
        match &self.tls {
            Some(certificates) => certificates.reload(),
            None => Ok(()),
        }
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Ends the drain of a shutdown at once: the jobs still running are
    /// stopped and handed back.
    pub fn hand_back_token(&self) -> CancellationToken {
        self.hand_back.clone()
    }

    /// Waits until the server has stopped: after the shutdown token is
    /// cancelled, once in-flight requests are done (or after 30 seconds)
    /// and the running jobs have finished or been handed back.
    pub async fn wait(self) -> Result<()> {
        let mut task = self.task;
        let served = tokio::select! {
            result = &mut task => result,
            () = self.shutdown.cancelled() => {
                match tokio::time::timeout(DRAIN_TIMEOUT, &mut task).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway");
                        task.abort();
                        Ok(Ok(()))
                    }
                }
            }
        };
        // However serving ended, the workers stop claiming and drain (they
        // have been since the shutdown began).
        self.shutdown.cancel();
        self.workers.await.context("the workers failed")?;
        served
            .context("server task failed")?
            .context("server failed")
    }

    /// Shuts down gracefully and waits for it.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Prepares everything and starts serving; see the crate documentation.
pub async fn start(config: Config) -> Result<Running> {
    // First, so that a wrong file stops start-up before anything is created.
    let certificates = config
        .tls
        .clone()
        .map(tls::Certificates::load)
        .transpose()?;
    files::create_private_dir(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let data_dir = config
        .data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", config.data_dir.display()))?;
    let payloads = payloads::PayloadFiles::new(&data_dir);
    files::create_private_dir(&payloads.dir())
        .with_context(|| format!("cannot create {}", payloads.dir().display()))?;

    let key = match config.master_key.clone() {
        Some(key) => key,
        None => {
            let path = data_dir.join(MASTER_KEY_FILE);
            let (key, created) = secrets::MasterKey::load_or_create(&path)
                .with_context(|| format!("cannot load master key {}", path.display()))?;
            if created {
                tracing::info!(
                    path = %path.display(),
                    "created the master key; back it up: sealed secrets cannot be read without it"
                );
            }
            key
        }
    };

    let url = config.database_url_for(&data_dir);
    let store = cronium_store::open(&url)
        .await
        .with_context(|| format!("cannot open database {}", config::redact_url(&url)))?;
    tracing::info!(backend = store.backend(), database = %config::redact_url(&url), "database ready");

    let sealer = secrets::Sealer::new(&key);
    let canary = store
        .master_key_canary(&sealer.seal_canary(), now())
        .await
        .context("cannot read the master key's canary")?;
    if !sealer.opens_canary(&canary) {
        let source = match config.master_key {
            Some(_) => "CRONIUM_MASTER_KEY".to_string(),
            None => data_dir.join(MASTER_KEY_FILE).display().to_string(),
        };
        anyhow::bail!(
            "the master key ({source}) is not the key this database's secrets are sealed with: \
             every server on one database needs the same master key (copy master.key from a \
             server that uses this database, or set CRONIUM_MASTER_KEY to it); refusing to start"
        );
    }

    let admin = store
        .ensure_admin(now())
        .await
        .context("cannot create the admin user")?;
    ensure_admin_token(store.as_ref(), &admin, &data_dir).await?;

    let rows = store.all_payloads().await.context("cannot list payloads")?;
    let report = payloads
        .sweep(&rows)
        .context("cannot sweep the payload directory")?;
    for path in &report.removed {
        tracing::info!(path = %path.display(), "removed a payload file that no row references");
    }
    for path in &report.missing {
        // Another server wrote it: fetched from the database when needed.
        tracing::debug!(path = %path.display(), "a payload is not on this server's disk");
    }
    // Payloads recorded before the database kept their bytes are stored
    // now, from this server's files, so every server can run them.
    for row in store
        .payloads_without_blob()
        .await
        .context("cannot list payloads")?
    {
        let path = payloads.resolve(&row.payload_path);
        match std::fs::read(&path) {
            Ok(bytes) if cronium_payload::Sha256Digest::of(&bytes).to_hex() == row.checksum => {
                store
                    .put_payload_blob(&row.checksum, &bytes, now())
                    .await
                    .context("cannot store a payload's bytes")?;
            }
            _ => tracing::warn!(
                path = %path.display(),
                "a payload is neither on this server's disk (as its checksum says) nor in the database"
            ),
        }
    }

    let executor = cronium_exec::LocalExecutor::new(cronium_exec::ExecutorConfig {
        runner: find_runner(config.runner.as_deref())?,
        work_dir: data_dir.join("work"),
        sandbox: match config.sandbox {
            config::SandboxMode::None => cronium_exec::Sandbox::None,
            config::SandboxMode::Bubblewrap => cronium_exec::Sandbox::Bubblewrap {
                allow_network: config.sandbox_network,
            },
        },
        kill_grace: KILL_GRACE,
    })
    .context("cannot set up the local executor")?
    // A sandboxed script must not read the master key, the database or the
    // admin token: the sandbox runs as this server's user.
    .hide_in_sandbox([data_dir.clone()]);
    sweep_work_dir(&data_dir.join("work"));
    let artifacts = cronium_exec::remote::RunnerArtifacts::discover(&executor.config().runner)
        .context("cannot read the runner binaries to deploy")?;
    let remote = cronium_exec::remote::RemoteExecutor::new(
        cronium_exec::remote::Pool::new(cronium_ssh::Timeouts::default()),
        artifacts,
        KILL_GRACE,
    );

    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    // Where HTTP events may go: the API checks it when one is saved, the
    // executor again at every run.
    let http_guard = cronium_exec::Guard::new(config.http_allow.clone());
    let hub = std::sync::Arc::new(cronium_engine::live::LogHub::default());
    let running = cronium_engine::running::RunningJobs::default();
    let jobs_queued = std::sync::Arc::new(tokio::sync::Notify::new());
    let schedules_changed = std::sync::Arc::new(tokio::sync::Notify::new());
    let shutdown = CancellationToken::new();
    // One name for this process, whatever it leases (jobs, deliveries).
    let owner = lease_owner();
    let heartbeat = cronium_engine::nodes::Heartbeat::new(
        store.clone(),
        owner.clone(),
        local_addr.to_string(),
        now(),
        running.clone(),
    );
    // The first heartbeat sets this process's clock to the database's
    // before anything compares a lease or a fire time.
    heartbeat
        .tick(chrono::Utc::now())
        .await
        .context("cannot record this server's heartbeat")?;

    let scheduler = cronium_engine::scheduler::Scheduler::new(
        store.clone(),
        schedules_changed.clone(),
        jobs_queued.clone(),
        running.clone(),
        cronium_engine::scheduler::Retention {
            age: config.job_retention,
            keep_per_event: config.job_keep,
        },
    )
    .owned_by(&owner);
    // Notifications go through the same guard as HTTP events: a channel's
    // URL is a request made on a user's behalf like theirs.
    let deliveries = cronium_engine::deliveries::Deliveries::new(
        store.clone(),
        sealer.clone(),
        http_guard.clone(),
        cronium_engine::deliveries::DeliveryConfig {
            public_url: config.public_url.clone(),
            ..cronium_engine::deliveries::DeliveryConfig::new(owner.clone())
        },
    );
    let workers = cronium_engine::worker::Workers::new(
        store.clone(),
        std::sync::Arc::new(cronium_exec::Executors::new(
            executor,
            remote,
            cronium_exec::HttpExecutor::new(
                http_guard.clone(),
                cronium_exec::HttpLimits::default(),
            ),
        )),
        payloads.clone(),
        sealer.clone(),
        hub.clone(),
        running.clone(),
        jobs_queued.clone(),
        cronium_engine::worker::WorkerConfig {
            owner: owner.clone(),
            slots: config.max_jobs,
            lease: config.job_lease,
            log_limit: config.job_log_limit,
            drain: config.drain_timeout,
            data_dir: Some(data_dir.clone()),
        },
    )
    // Messages are owed the moment a job ends: the workers say so.
    .wake_deliveries(deliveries.waker());
    tokio::spawn(scheduler.run(shutdown.clone()));
    let hand_back = workers.hand_back_token();
    let workers = tokio::spawn(workers.run(shutdown.clone()));
    tokio::spawn(deliveries.run(shutdown.clone()));
    tokio::spawn(heartbeat.run(shutdown.clone()));
    // Other servers on the database wake this one's loops (PostgreSQL
    // LISTEN); without it, or with --poll-only, the loops' polls find
    // their work.
    let wakers = cronium_engine::signals::Wakers {
        jobs_queued: jobs_queued.clone(),
        schedules_changed: schedules_changed.clone(),
        hub: hub.clone(),
    };
    match cronium_engine::signals::SignalRouter::new(&*store, wakers) {
        Some(_) if config.poll_only => {
            tracing::info!(
                "--poll-only: no LISTEN; other servers' work and log lines are found by polling"
            )
        }
        Some(router) => {
            tokio::spawn(router.run(shutdown.clone()));
        }
        None => {}
    }

    let app = api::router(state::AppState::new(state::Shared {
        store,
        sealer,
        http_guard,
        payloads,
        retention: config.payload_retention,
        metrics: metrics::Metrics::default(),
        payload_lock: tokio::sync::Mutex::new(()),
        hub,
        running,
        jobs_queued,
        schedules_changed,
        ui: ui::UiState::new(&config),
        trusted_proxies: config.trusted_proxies.clone(),
    }));
    let shutdown_signal = shutdown.clone();
    let stopping = async move { shutdown_signal.cancelled().await };
    // The peer's address and whether it came over TLS (`client::Peer`) say
    // who the client is, with the trusted proxies' headers.
    let task = match &certificates {
        Some(certificates) => {
            let listener = tls::TlsListener::new(listener, certificates.clone())?;
            tokio::spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<client::Peer>(),
                )
                .with_graceful_shutdown(stopping)
                .await
            })
        }
        None => tokio::spawn(async move {
            axum::serve(
                PlainListener(listener),
                app.into_make_service_with_connect_info::<client::Peer>(),
            )
            .with_graceful_shutdown(stopping)
            .await
        }),
    };
    let scheme = if certificates.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(address = %local_addr, scheme, data_dir = %data_dir.display(), "listening");
    Ok(Running {
        local_addr,
        data_dir,
        shutdown,
        hand_back,
        task,
        workers,
        tls: certificates,
    })
}

/// How long a cancelled or timed-out script gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// The runner binary: the configured path, else `cronium-runner` next to
/// this program (where `cargo build` and the release archive put it), else
/// on `PATH`.
fn find_runner(configured: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = configured {
        return Ok(path.to_path_buf());
    }
    const NAME: &str = "cronium-runner";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(NAME)))
        .filter(|p| p.is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(NAME))
                .find(|p| p.is_file())
        })
    };
    beside.or_else(on_path).with_context(|| {
        format!(
            "cannot find {NAME} next to this program or on PATH; build it (cargo build --release builds both) or pass --runner PATH"
        )
    })
}

/// Removes per-run work dirs a previous process left behind (a runner
/// removes its own when it ends, but not when the server was killed first).
/// Only this server runs jobs in its data dir, so none of them is in use.
fn sweep_work_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale work dir");
        } else {
            tracing::info!(path = %path.display(), "removed a stale work dir");
        }
    }
}

/// A lease owner name unique to this process: host, pid and a random tag
/// (a pid can repeat after a restart; the tag cannot).
fn lease_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let mut tag = [0u8; 4];
    let _ = getrandom::fill(&mut tag);
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}/{}/{tag}", std::process::id())
}

/// On first start (no `admin.token` yet) creates an admin token and writes
/// it to `admin.token`, mode 0600. The row is created before the file: a
/// crash in between leaves an unused token row, never a file that does not
/// authenticate.
async fn ensure_admin_token(store: &dyn Store, admin: &User, data_dir: &Path) -> Result<()> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if path.exists() {
        files::warn_if_not_private(&path);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let token = text.trim();
        let live = tokens::well_formed(token)
            && store
                .use_token(&tokens::hash(token), now())
                .await?
                .is_some();
        if !live {
            tracing::warn!(
                path = %path.display(),
                "this file holds no live token of this database; delete it and restart to get a new admin token"
            );
        }
        return Ok(());
    }
    let secret = tokens::TokenSecret::generate();
    let name = "admin (first start)";
    let audit = AuditEntry {
        at: now(),
        actor: None,
        action: "token.create".into(),
        target_type: "token".into(),
        target_id: None,
        detail: serde_json::json!({ "name": name, "role": "admin", "file": ADMIN_TOKEN_FILE }),
    };
    store
        .create_token(
            NewToken {
                user_id: admin.id,
                name: name.into(),
                role: Role::Admin,
                hash: secret.hash(),
            },
            now(),
            &audit,
        )
        .await
        .context("cannot create the admin token")?;
    files::create_private_file(&path, format!("{}\n", secret.as_str()).as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "created an admin API token; it is in this file (mode 0600)");
    Ok(())
}

/// `cronium serve`: [`start`], then run until SIGINT or SIGTERM; with TLS,
/// SIGHUP reloads the certificate.
pub async fn run(config: Config) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Taken before start-up, so no SIGHUP after it is lost (nor kills the
    // server). Without TLS, SIGHUP keeps its usual meaning.
    let hangups = match config.tls {
        Some(_) => Some(signal(SignalKind::hangup()).context("cannot wait for SIGHUP")?),
        None => None,
    };
    let running = start(config).await?;
    if let (Some(mut hangups), Some(certificates)) = (hangups, running.tls.clone()) {
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!(signal = "SIGHUP", "reloading the TLS certificate");
                if let Err(e) = certificates.reload() {
                    tracing::warn!(error = %format!("{e:#}"), "cannot reload the TLS certificate; keeping the one in use");
                }
            }
        });
    }
    let shutdown = running.shutdown_token();
    let hand_back = running.hand_back_token();
    tokio::spawn(async move {
        match stop_signal().await {
            Ok(name) => tracing::info!(signal = name, "shutting down"),
            Err(e) => tracing::error!(error = %e, "cannot wait for signals; shutting down"),
        }
        shutdown.cancel();
        // A second signal: no more waiting for running jobs.
        if let Ok(name) = stop_signal().await {
            tracing::info!(signal = name, "handing the running jobs back now");
            hand_back.cancel();
        }
    });
    running.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn stop_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
    }
}

/// Logs to standard error. `CRONIUM_LOG` filters, e.g. `debug` or
/// `info,cronium_server=debug` (default `info`).
pub fn init_logging() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("CRONIUM_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .try_init();
}

/// The whole of `cronium serve` for a synchronous caller (the CLI): reads the
/// environment, sets up logging and a runtime, and serves until a signal.
pub fn serve_blocking(flags: Overrides) -> Result<()> {
    let config = Config::resolve(flags, &|name| std::env::var(name).ok())?;
    init_logging();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(config))
}
