//! A QMP client: QEMU's machine protocol, JSON objects one per line on a
//! unix socket. After the greeting the client must send
//! `qmp_capabilities`; then each command gets `return` or `error`, and
//! asynchronous `event`s may come between them (kept in
//! [`Qmp::events`]).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::readiness::{poll_until, Probe};

/// How long one command may take to be answered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One QMP session.
#[derive(Debug)]
pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    what: String,
    /// Events received so far, with when they were read.
    pub events: Vec<(Instant, Value)>,
}

impl Qmp {
    /// Connects to the QMP socket at `path` (polling until QEMU listens,
    /// up to `timeout`) and leaves capabilities negotiation.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self> {
        let what = format!("QMP at {}", path.display());
        let stream = poll_until(&what, timeout, || match UnixStream::connect(path) {
            Ok(s) => Ok(Probe::Ready(s)),
            Err(e) => Ok(Probe::NotYet(e.to_string())),
        })?;
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(|e| Error::io(format!("configuring {what}"), e))?;
        let reader = BufReader::new(
            stream
                .try_clone()
                .map_err(|e| Error::io(format!("cloning {what}"), e))?,
        );
        let mut qmp = Self {
            writer: stream,
            reader,
            what,
            events: Vec::new(),
        };
        let greeting = qmp.read()?;
        if greeting.get("QMP").is_none() {
            return Err(qmp.unexpected("a greeting with \"QMP\"", &greeting));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments` and returns its `return` value; an
    /// `error` answer is an [`Error::Command`] with QEMU's description.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut request = json!({ "execute": command });
        if let Some(args) = arguments {
            request["arguments"] = args;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(format!("sending {command} to {}", self.what), e))?;
        loop {
            let answer = self.read()?;
            if let Some(ret) = answer.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = answer.get("error") {
                return Err(Error::Command {
                    command: format!("QMP {request}"),
                    status: None,
                    stderr: format!(
                        "{}: {}",
                        err["class"].as_str().unwrap_or("error"),
                        err["desc"].as_str().unwrap_or("")
                    ),
                });
            }
            if answer.get("event").is_some() {
                self.events.push((Instant::now(), answer));
                continue;
            }
            return Err(self.unexpected("return, error or event", &answer));
        }
    }

    /// The events named `name` received so far.
    pub fn events_named(&self, name: &str) -> Vec<&(Instant, Value)> {
        self.events
            .iter()
            .filter(|(_, e)| e["event"] == name)
            .collect()
    }

    /// When QEMU emitted the last event named `name`, in seconds since the
    /// Unix epoch (its `timestamp`, QEMU's wall clock: the testbed's, and
    /// `ping -D`'s).
    pub fn last_event_time(&self, name: &str) -> Option<f64> {
        self.events_named(name).last().and_then(|(_, e)| {
            let t = &e["timestamp"];
            Some(t["seconds"].as_f64()? + t["microseconds"].as_f64()? / 1e6)
        })
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| Error::io(format!("reading {}", self.what), e))?;
        if n == 0 {
            return Err(Error::io(
                format!("reading {}", self.what),
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "QEMU closed the socket"),
            ));
        }
        serde_json::from_str(&line).map_err(|e| Error::UnexpectedOutput {
            command: self.what.clone(),
            reason: format!("not JSON: {e}"),
            output: line,
        })
    }

    fn unexpected(&self, wanted: &str, got: &Value) -> Error {
        Error::UnexpectedOutput {
            command: self.what.clone(),
            reason: format!("expected {wanted}"),
            output: got.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A peer that speaks the server side of a scripted exchange.
    fn serve(
        path: &Path,
        script: Vec<(&'static str, &'static str)>,
    ) -> std::thread::JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            for (expect, answer) in script {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let got: Value = serde_json::from_str(&line).unwrap();
                assert_eq!(got["execute"], expect, "{line}");
                s.write_all(answer.as_bytes()).unwrap();
            }
        })
    }

    #[test]
    fn commands_return_values_errors_and_keep_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let peer = serve(
            &path,
            vec![
                ("qmp_capabilities", "{\"return\": {}}\n"),
                (
                    "query-status",
                    "{\"timestamp\": {\"seconds\": 1765000000, \"microseconds\": 250000}, \
                     \"event\": \"RESUME\"}\n{\"return\": {\"status\": \"running\"}}\n",
                ),
                (
                    "migrate",
                    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no route\"}}\n",
                ),
            ],
        );
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let status = qmp.execute("query-status", None).unwrap();
        assert_eq!(status["status"], "running");
        assert_eq!(qmp.events_named("RESUME").len(), 1);
        assert_eq!(qmp.last_event_time("RESUME"), Some(1_765_000_000.25));
        assert_eq!(qmp.last_event_time("STOP"), None);
        let err = qmp
            .execute("migrate", Some(json!({"uri": "tcp:192.0.2.1:1"})))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no route") && err.contains("GenericError"),
            "{err}"
        );
        peer.join().unwrap();
    }

    #[test]
    fn a_peer_that_is_not_qemu_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"{\"hello\": 1}\n").unwrap();
        });
        let err = Qmp::connect(&path, Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("greeting"), "{err}");
        peer.join().unwrap();
    }
}
