//! The QMP socket: `-qmp unix:PATH,server=on,wait=…` (QEMU `chardev/char-socket.c`
//! as a listening Unix socket, `monitor/qmp.c` on it). QEMU unlinks a stale socket
//! file before binding, accepts one client at a time on the chardev, sends the
//! greeting on connect and restarts capability negotiation for every client; so does
//! this server. After `quit` it sends the reply and SHUTDOWN, closes the connection
//! and removes the socket file (QEMU exits).

use super::{QmpGuest, Session};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How often a connection checks for events and the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// A listening QMP socket.
#[derive(Debug)]
pub struct QmpServer {
    listener: UnixListener,
    path: PathBuf,
}

impl QmpServer {
    /// Bind the socket at `path` (a stale file there is removed first, as QEMU does).
    pub fn bind(path: &Path) -> io::Result<Self> {
        if std::fs::symlink_metadata(path).is_ok() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        Ok(QmpServer {
            listener,
            path: path.to_owned(),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Block until a client connects (`wait=on`), returning it; `None` if `stop` was
    /// set first.
    pub fn accept(&self, stop: &AtomicBool) -> io::Result<Option<UnixStream>> {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false)?;
                    return Ok(Some(s));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(None);
                    }
                    std::thread::sleep(POLL);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Serve clients one after another until `quit` or until `stop` is set.
    /// `first` is a client already accepted (after `wait=on`).
    pub fn serve<G: QmpGuest>(
        &self,
        session: &Mutex<Session<G>>,
        stop: &AtomicBool,
        mut first: Option<UnixStream>,
    ) -> io::Result<()> {
        loop {
            let client = match first.take() {
                Some(c) => c,
                None => match self.accept(stop)? {
                    Some(c) => c,
                    None => return Ok(()),
                },
            };
            if serve_client(client, session, stop)? {
                let _ = std::fs::remove_file(&self.path);
                return Ok(());
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
    }
}

/// One connection. Returns whether the monitor was closed by `quit`.
fn serve_client<G: QmpGuest>(
    mut client: UnixStream,
    session: &Mutex<Session<G>>,
    stop: &AtomicBool,
) -> io::Result<bool> {
    let lock = || session.lock().unwrap_or_else(PoisonError::into_inner);
    let greeting = lock().connect();
    if client.write_all(greeting.as_bytes()).is_err() {
        return Ok(false);
    }
    client.set_read_timeout(Some(POLL))?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                0
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(_) => return Ok(false),
        };
        let (mut out, closed) = {
            let mut s = lock();
            let mut out = s.feed(&buf[..n]);
            out.extend(s.poll_events());
            (out, s.closed())
        };
        for line in out.drain(..) {
            if client.write_all(line.as_bytes()).is_err() {
                return Ok(closed);
            }
        }
        if closed {
            let _ = client.shutdown(std::net::Shutdown::Both);
            return Ok(true);
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
    }
}

/// Serve `session` on `server` in a thread; the returned handle's `stop` ends it.
#[derive(Debug)]
pub struct ServerThread {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl ServerThread {
    /// Start serving (`first`: a client accepted already, for `wait=on`).
    pub fn spawn<G: QmpGuest + 'static>(
        server: QmpServer,
        session: Arc<Mutex<Session<G>>>,
        first: Option<UnixStream>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || server.serve(&session, &s, first));
        ServerThread {
            stop,
            handle: Some(handle),
        }
    }

    /// Whether the server thread has ended (after `quit`).
    pub fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stop and join.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("QMP server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
