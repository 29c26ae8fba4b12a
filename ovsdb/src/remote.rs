//! OVSDB remotes in the notation of `ovsdb-server(1)` and `ovs-vsctl --db`:
//! `unix:PATH`, `tcp:IP:PORT` and `ssl:IP:PORT` (an IPv6 address in
//! brackets, `tcp:[::1]:6640`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

/// Where an OVSDB server listens, from the client's side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Remote {
    Unix(PathBuf),
    Tcp(SocketAddr),
    /// TLS over TCP; connecting needs [`crate::Tls`] in the options.
    Ssl(SocketAddr),
}

impl FromStr for Remote {
    type Err = RemoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.to_owned();
        let err = |problem| RemoteError {
            input: input.clone(),
            problem,
        };
        let (scheme, rest) = s.split_once(':').ok_or_else(|| err(Problem::NoScheme))?;
        match scheme {
            "unix" => {
                if rest.is_empty() {
                    return Err(err(Problem::EmptyPath));
                }
                Ok(Self::Unix(PathBuf::from(rest)))
            }
            "tcp" | "ssl" => {
                let (host, port) = rest.rsplit_once(':').ok_or_else(|| err(Problem::NoPort))?;
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                let ip: IpAddr = host
                    .parse()
                    .map_err(|_| err(Problem::BadIp(host.to_owned())))?;
                let port: u16 = port
                    .parse()
                    .map_err(|_| err(Problem::BadPort(port.to_owned())))?;
                if port == 0 {
                    return Err(err(Problem::BadPort(port.to_string())));
                }
                let addr = SocketAddr::new(ip, port);
                Ok(if scheme == "ssl" {
                    Self::Ssl(addr)
                } else {
                    Self::Tcp(addr)
                })
            }
            "punix" | "ptcp" | "pssl" => Err(err(Problem::Passive(scheme.to_owned()))),
            other => Err(err(Problem::UnknownScheme(other.to_owned()))),
        }
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(SocketAddr::V4(a)) => write!(f, "tcp:{}:{}", a.ip(), a.port()),
            Self::Tcp(SocketAddr::V6(a)) => write!(f, "tcp:[{}]:{}", a.ip(), a.port()),
            Self::Ssl(SocketAddr::V4(a)) => write!(f, "ssl:{}:{}", a.ip(), a.port()),
            Self::Ssl(SocketAddr::V6(a)) => write!(f, "ssl:[{}]:{}", a.ip(), a.port()),
        }
    }
}

/// A remote string that could not be parsed; the caller's configuration is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    pub input: String,
    problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    NoScheme,
    EmptyPath,
    NoPort,
    BadIp(String),
    BadPort(String),
    Passive(String),
    UnknownScheme(String),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid OVSDB remote {:?}: ", self.input)?;
        match &self.problem {
            Problem::NoScheme => f.write_str("expected unix:PATH, tcp:IP:PORT or ssl:IP:PORT"),
            Problem::EmptyPath => {
                f.write_str("unix: needs a socket path, e.g. unix:/var/run/openvswitch/db.sock")
            }
            Problem::NoPort => f.write_str(
                "tcp: and ssl: need IP:PORT, e.g. tcp:192.0.2.10:6640 or ssl:192.0.2.10:6640",
            ),
            Problem::BadIp(ip) => write!(
                f,
                "{ip:?} is not an IP address (host names are not resolved; write IPv6 as [::1])"
            ),
            Problem::BadPort(p) => write!(f, "{p:?} is not a TCP port (1-65535)"),
            Problem::Passive(s) => write!(
                f,
                "{s}: is a listening remote for ovsdb-server; a client connects with {}:",
                s.trim_start_matches('p')
            ),
            Problem::UnknownScheme(s) => {
                write!(
                    f,
                    "unknown scheme {s:?}; expected unix:PATH, tcp:IP:PORT or ssl:IP:PORT"
                )
            }
        }
    }
}

impl std::error::Error for RemoteError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_and_tcp() {
        assert_eq!(
            "unix:/run/ovs/db.sock".parse::<Remote>().unwrap(),
            Remote::Unix("/run/ovs/db.sock".into())
        );
        assert_eq!(
            "tcp:127.0.0.1:6640".parse::<Remote>().unwrap(),
            Remote::Tcp("127.0.0.1:6640".parse().unwrap())
        );
        assert_eq!(
            "tcp:[::1]:6640".parse::<Remote>().unwrap(),
            Remote::Tcp("[::1]:6640".parse().unwrap())
        );
        assert_eq!(
            "ssl:192.0.2.10:6640".parse::<Remote>().unwrap(),
            Remote::Ssl("192.0.2.10:6640".parse().unwrap())
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "unix:/tmp/x y/db.sock",
            "tcp:10.0.0.1:6640",
            "tcp:[fe80::1]:1",
            "ssl:10.0.0.1:6640",
            "ssl:[::1]:6640",
        ] {
            assert_eq!(s.parse::<Remote>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn errors_say_what_to_write_instead() {
        let msg = |s: &str| s.parse::<Remote>().unwrap_err().to_string();
        assert!(msg("/var/run/db.sock").contains("expected unix:PATH, tcp:IP:PORT or ssl:IP:PORT"));
        assert!(msg("unix:").contains("needs a socket path"));
        assert!(msg("tcp:127.0.0.1").contains("need IP:PORT"));
        assert!(msg("tcp:300.1.1.1:6640").contains("is not an IP address"));
        assert!(msg("tcp:6640").contains("need IP:PORT"));
        assert!(msg("tcp:ovs.example:6640").contains("host names are not resolved"));
        assert!(msg("tcp:127.0.0.1:99999").contains("is not a TCP port"));
        assert!(msg("tcp:127.0.0.1:0").contains("is not a TCP port"));
        assert!(msg("ptcp:6640").contains("a client connects with tcp:"));
        assert!(msg("punix:/x").contains("a client connects with unix:"));
        assert!(msg("ssl:1.2.3.4").contains("need IP:PORT"));
        assert!(msg("pssl:6640").contains("a client connects with ssl:"));
        assert!(msg("http://x").contains("unknown scheme \"http\""));
    }
}
