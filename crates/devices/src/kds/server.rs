//! The KDS listeners: plain HTTP on one address, HTTPS on others (AMD serves the
//! VCEK paths on 443 and the VLEK ones on 444, frontends.md §4), a thread per
//! listener and per connection, and the CA written where the caller asks.

use super::http::{Request, answer, read_request, write_response};
use super::tls::{KdsTls, TlsError};
use super::{Kds, KdsResponse};
use softsev_crypto::rng::Rng;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request the KDS answered (for an event log).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KdsEvent {
    /// The listener's local address.
    pub local: SocketAddr,
    /// Whether it came over TLS.
    pub tls: bool,
    /// Request method.
    pub method: String,
    /// Request target (path and query).
    pub target: String,
    /// The `Host` header.
    pub host: Option<String>,
    /// Status answered.
    pub status: u16,
    /// Body bytes answered.
    pub bytes: usize,
}

/// Called for each answered request.
pub type KdsObserver = Arc<dyn Fn(&KdsEvent) + Send + Sync>;

/// Where and how to serve.
#[derive(Clone, Default)]
pub struct KdsServerConfig {
    /// The plain-HTTP listener (port 0 picks a free port).
    pub http: Option<SocketAddr>,
    /// HTTPS listeners (exec uses 127.0.0.1:443 and 127.0.0.1:444).
    pub https: Vec<SocketAddr>,
    /// Write the TLS CA certificate (PEM) here; the file must not exist.
    pub ca_pem_path: Option<PathBuf>,
    /// Seed of the TLS keys (`None`: OS randomness).
    pub seed: Option<Vec<u8>>,
    /// Called after each request.
    pub observer: Option<KdsObserver>,
}

impl std::fmt::Debug for KdsServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KdsServerConfig")
            .field("http", &self.http)
            .field("https", &self.https)
            .field("ca_pem_path", &self.ca_pem_path)
            .field("seeded", &self.seed.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum KdsServerError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The TLS identity could not be made.
    #[error("KDS TLS: {0}")]
    Tls(#[from] TlsError),
    /// The CA file could not be written.
    #[error("writing the KDS CA to {path}: {source}")]
    CaFile {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Nothing to serve on.
    #[error("no listener configured (neither http nor https)")]
    NoListener,
}

/// A running KDS. Dropping it (or [`KdsServer::shutdown`]) stops the listeners.
pub struct KdsServer {
    http: Option<SocketAddr>,
    https: Vec<SocketAddr>,
    tls: Option<Arc<KdsTls>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for KdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KdsServer")
            .field("http", &self.http)
            .field("https", &self.https)
            .finish_non_exhaustive()
    }
}

struct Shared {
    kds: Arc<Kds>,
    observer: Option<KdsObserver>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: Arc<AtomicBool>,
}

impl KdsServer {
    /// Bind every listener, make the TLS identity if HTTPS is asked for (and write
    /// its CA), and start serving `kds`.
    pub fn start(kds: Arc<Kds>, cfg: KdsServerConfig) -> Result<KdsServer, KdsServerError> {
        if cfg.http.is_none() && cfg.https.is_empty() {
            return Err(KdsServerError::NoListener);
        }
        let bind = |addr: SocketAddr| {
            TcpListener::bind(addr).map_err(|source| KdsServerError::Bind { addr, source })
        };
        let http = cfg.http.map(bind).transpose()?;
        let https = cfg
            .https
            .iter()
            .map(|a| bind(*a))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = if https.is_empty() {
            None
        } else {
            let mut rng = match &cfg.seed {
                Some(s) => Rng::seeded(s, "softsev kds tls"),
                None => Rng::os(),
            };
            let t = Arc::new(KdsTls::generate(&mut rng)?);
            if let Some(p) = &cfg.ca_pem_path {
                write_new(p, t.ca_pem().as_bytes()).map_err(|source| KdsServerError::CaFile {
                    path: p.clone(),
                    source,
                })?;
            }
            Some(t)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut out = KdsServer {
            http: None,
            https: Vec::new(),
            tls: tls.clone(),
            stop: stop.clone(),
            threads: Vec::new(),
        };
        let mut spawn = |l: TcpListener, tls_cfg: Option<Arc<rustls::ServerConfig>>| {
            let local = l.local_addr().map_err(|source| KdsServerError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            let shared = Arc::new(Shared {
                kds: kds.clone(),
                observer: cfg.observer.clone(),
                tls: tls_cfg,
                stop: stop.clone(),
            });
            threads.push(std::thread::spawn(move || accept_loop(l, local, shared)));
            Ok::<SocketAddr, KdsServerError>(local)
        };
        if let Some(l) = http {
            out.http = Some(spawn(l, None)?);
        }
        for l in https {
            let cfg = tls.as_ref().map(|t| t.server_config());
            out.https.push(spawn(l, cfg)?);
        }
        out.threads = threads;
        tracing::info!(http = ?out.http, https = ?out.https, "KDS serving");
        Ok(out)
    }

    /// The plain-HTTP address, if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// `http://ADDR` (what tools with a base-URL setting take).
    pub fn http_base(&self) -> Option<String> {
        self.http.map(|a| format!("http://{a}"))
    }

    /// The HTTPS addresses.
    pub fn https_addrs(&self) -> &[SocketAddr] {
        &self.https
    }

    /// The CA certificate (PEM) the HTTPS listeners chain to.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_deref().map(KdsTls::ca_pem)
    }

    /// Stop the listeners and wait for them.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for a in self.http.iter().chain(self.https.iter()) {
            // Wake the blocked accept; it sees the flag and returns.
            let _ = TcpStream::connect_timeout(&wake_addr(*a), Duration::from_secs(1));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for KdsServer {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The address to connect to for a listener bound to `a` (an unspecified address
/// is reached on loopback).
fn wake_addr(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], a.port()))
    } else {
        a
    }
}

fn accept_loop(l: TcpListener, local: SocketAddr, shared: Arc<Shared>) {
    for conn in l.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        match conn {
            Ok(s) => {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(s, local, &shared) {
                        tracing::debug!(%local, "KDS connection: {e}");
                    }
                });
            }
            Err(e) => tracing::debug!(%local, "KDS accept: {e}"),
        }
    }
}

fn serve(s: TcpStream, local: SocketAddr, shared: &Shared) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    match &shared.tls {
        None => {
            let mut s = s;
            let r = read_request(&mut s)?;
            respond(&mut s, r, local, false, shared)
        }
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg.clone())
                .map_err(|e| io::Error::other(e.to_string()))?;
            let mut tls = rustls::StreamOwned::new(conn, s);
            let r = read_request(&mut tls)?;
            respond(&mut tls, r, local, true, shared)?;
            tls.conn.send_close_notify();
            tls.flush()
        }
    }
}

fn respond<W: Write>(
    w: &mut W,
    r: Result<Request, KdsResponse>,
    local: SocketAddr,
    tls: bool,
    shared: &Shared,
) -> io::Result<()> {
    let (req, resp) = match r {
        Ok(req) => {
            let resp = answer(&shared.kds, &req);
            (Some(req), resp)
        }
        Err(resp) => (None, resp),
    };
    let head = req.as_ref().is_some_and(|r| r.method == "HEAD");
    write_response(w, &resp, head)?;
    let ev = KdsEvent {
        local,
        tls,
        method: req.as_ref().map(|r| r.method.clone()).unwrap_or_default(),
        target: req.as_ref().map(|r| r.target.clone()).unwrap_or_default(),
        host: req.and_then(|r| r.host),
        status: resp.status,
        bytes: resp.body.len(),
    };
    tracing::info!(
        local = %ev.local,
        tls,
        method = %ev.method,
        target = %ev.target,
        host = ?ev.host,
        status = ev.status,
        "KDS request"
    );
    if let Some(o) = &shared.observer {
        o(&ev);
    }
    Ok(())
}

/// Write `data` to a new file `path` (refusing to replace one), through a temporary
/// file renamed when complete.
fn write_new(path: &Path, data: &[u8]) -> io::Result<()> {
    if path.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the file exists (not overwritten)",
        ));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
