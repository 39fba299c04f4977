//! Built-in HTTPS: the certificate and key from PEM files, reloaded when the files change or on SIGHUP, and the listener that does TLS handshakes beside its accept loop.
//!
//! [`Certificates`] holds the pair in use and hands it to every handshake
//! (it is rustls's certificate resolver). Before each new connection the
//! listener looks at the files' modification time, size and inode (two
//! `stat` calls) and reloads when they changed; `SIGHUP` reloads whatever
//! they say. A reload that fails (a half-written file, a key that does not
//! match) keeps the pair in use and logs why; the next change tries again.
//!
//! [`TlsListener`] accepts TCP connections in its own task and runs each
//! handshake in a task of its own with a time limit, so one client that
//! never finishes its handshake cannot hold up the others; axum serves the
//! finished streams.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// Where the certificate (chain) and its private key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What identifies one version of a file cheaply: modification time,
/// size, inode. `None`: it could not be read.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// The certificate and key in use; see the module documentation.
pub struct Certificates {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamps when they were last read, whether that worked or
    /// not (a bad pair is not retried until a file changes again). The lock
    /// also keeps two reloads from interleaving.
    seen: Mutex<(Stamp, Stamp)>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Reads both files; an error names the file at fault.
    pub fn load(files: TlsFiles) -> Result<Arc<Certificates>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = (stamp(&files.cert), stamp(&files.key));
        let key = read_pair(&files, &provider)?;
        Ok(Arc::new(Certificates {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new(stamps),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again whatever their stamps say (SIGHUP). On error
    /// the pair in use stays.
    pub fn reload(&self) -> Result<()> {
        let mut seen = self.seen.lock().expect("certificate lock");
        *seen = (stamp(&self.files.cert), stamp(&self.files.key));
        self.replace()
    }

    /// Reloads when either file changed since it was last read; logs what
    /// happened. Cheap when nothing changed.
    pub fn reload_if_changed(&self) {
        let mut seen = self.seen.lock().expect("certificate lock");
        let now = (stamp(&self.files.cert), stamp(&self.files.key));
        if now == *seen {
            return;
        }
        *seen = now;
        if let Err(e) = self.replace() {
            tracing::warn!(error = %format!("{e:#}"), "the TLS files changed but cannot be used; keeping the certificate in use");
        }
    }

    fn replace(&self) -> Result<()> {
        let key = read_pair(&self.files, &self.provider)?;
        *self.current.write().expect("certificate lock") = Arc::new(key);
        tracing::info!(cert = %self.files.cert.display(), "loaded a new TLS certificate");
        Ok(())
    }

    /// A rustls configuration that takes its certificate from here.
    fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("cannot set up TLS")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        // axum here speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }
}

/// The certificate chain and key of `files`, checked to belong together.
fn read_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let (cert_path, key_path) = (&files.cert, &files.key);
    let cert_pem = std::fs::read(cert_path)
        .with_context(|| format!("cannot read the TLS certificate {}", cert_path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: not a PEM certificate ({e})", cert_path.display()))?;
    if chain.is_empty() {
        bail!(
            "{}: no certificate in it (expected PEM, \"-----BEGIN CERTIFICATE-----\")",
            cert_path.display()
        );
    }
    let key_pem = std::fs::read(key_path)
        .with_context(|| format!("cannot read the TLS key {}", key_path.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow!(
            "{}: no private key in it (expected PEM, \"-----BEGIN PRIVATE KEY-----\"): {e}",
            key_path.display()
        )
    })?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow!("{}: cannot use this private key: {e}", key_path.display()))?;
    let pair = CertifiedKey::new(chain, signer);
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => bail!(
            "the private key in {} does not belong to the certificate in {}",
            key_path.display(),
            cert_path.display()
        ),
        Err(e) => bail!("{}: cannot use this certificate: {e}", cert_path.display()),
    }
}

/// A listener that hands axum TLS streams whose handshake is done; see the
/// module documentation.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, certificates: Arc<Certificates>) -> Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(certificates.server_config()?));
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, mostly: give others time
                        // to close theirs.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                // As `PlainListener` does: small writes (event streams) go out at once.
                let _ = stream.set_nodelay(true);
                certificates.reload_if_changed();
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(client = %addr.ip(), error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(client = %addr.ip(), "TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(TlsListener {
            local_addr,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // The accept loop owns the socket: stopping it closes the port.
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept loop never ends by itself.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}
