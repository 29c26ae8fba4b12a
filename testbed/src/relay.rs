//! A unix-socket relay that holds back what goes through it: a slow link
//! between a client and a server, made of the real bytes.
//!
//! The `controller-restart` scenario puts one between the controller and
//! each PM's ovsdb-server, so that the restarted controller's OVSDB sessions
//! (and so its port reports) come only after its switches are back: the
//! order in which a controller that planned from what it had would delete
//! live flows. Each accepted connection waits until the relay is opened,
//! then for the relay's delay, then is joined to the server and copied both
//! ways until either side closes.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};

/// How often the accepting thread looks for a stop.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// Whether held connections may go on.
#[derive(Debug, Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A relay listening on a unix socket; dropped, it stops accepting (joined
/// connections go on until a side closes).
#[derive(Debug)]
pub struct Relay {
    listen: PathBuf,
    gate: Arc<Gate>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on `listen` and joins each connection to `server` once the
    /// relay is opened ([`Relay::open`]) and `delay` has passed after that.
    pub fn start(listen: &Path, server: &Path, delay: Duration) -> Result<Self> {
        let listener =
            UnixListener::bind(listen).map_err(|e| Error::io_at("listening on", listen, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io_at("configuring", listen, e))?;
        let gate = Arc::new(Gate::default());
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (gate, stop, server) = (gate.clone(), stop.clone(), server.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let (gate, server) = (gate.clone(), server.clone());
                            std::thread::spawn(move || {
                                gate.wait();
                                std::thread::sleep(delay);
                                // A server that is gone closes the client too.
                                let _ = join(client, &server);
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(ACCEPT_POLL);
                        }
                        Err(_) => std::thread::sleep(ACCEPT_POLL),
                    }
                }
            })
        };
        Ok(Self {
            listen: listen.to_owned(),
            gate,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// The relay's address as OVS and the controller spell a unix remote.
    pub fn target(&self) -> String {
        format!("unix:{}", self.listen.display())
    }

    /// Lets the held connections (and every later one) go on, each after
    /// the relay's delay.
    pub fn open(&self) {
        self.gate.open();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Nothing may stay held for ever.
        self.gate.open();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.listen);
    }
}

/// Copies between `client` and a new connection to `server`, both ways,
/// until each direction ends.
fn join(client: UnixStream, server: &Path) -> io::Result<()> {
    client.set_nonblocking(false)?;
    let upstream = UnixStream::connect(server)?;
    let (c2, u2) = (client.try_clone()?, upstream.try_clone()?);
    let back = std::thread::spawn(move || copy_until_closed(u2, c2));
    copy_until_closed(client, upstream);
    let _ = back.join();
    Ok(())
}

/// Copies `from` into `to` until `from` ends or either fails, then closes
/// `to`'s writing side so the peer sees the end too.
fn copy_until_closed(mut from: UnixStream, mut to: UnixStream) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn bytes_pass_only_once_opened_and_after_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let server_path = dir.path().join("server.sock");
        let server = UnixListener::bind(&server_path).unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        let delay = Duration::from_millis(150);
        let relay = Relay::start(&dir.path().join("relay.sock"), &server_path, delay).unwrap();
        assert!(relay.target().starts_with("unix:"));
        let mut client = UnixStream::connect(dir.path().join("relay.sock")).unwrap();
        client.write_all(b"hello").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 5];
        assert!(client.read_exact(&mut buf).is_err(), "held while closed");
        let opened = Instant::now();
        relay.open();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert!(opened.elapsed() >= delay, "{:?}", opened.elapsed());
        echo.join().unwrap();
    }
}
