//! `irisctl`: the broker's command line, for administrators and operators.
//!
//! ```text
//! irisctl [--url URL] [--token TOKEN | --token-file FILE] [--output table|json] COMMAND
//!   provider create NAME | list          token create --provider ID [--admin]
//!   pm register NAME ... | list | deregister NAME [--drain]
//!   flavor create NAME --vcpus N --memory-mib N --disk-gib N | list
//!   vi create NAME --gateway IP[:PORT] [--gateway-name N] [--gateway-token-hash H] --vlans A-B (--pool CIDR | --dhcp) [--ssh-key-file F] | list | show ID | delete ID [--force]
//!   node request --vi ID --count N --flavor F [--pm P] [--group G --policy affinity|anti-affinity] [--no-wait]
//!   node list [--vi ID] | show ID | delete ID [--drain [--drain-timeout SECS]] [--no-wait] | migrate ID [--pm P] [--no-wait]
//!   op show ID | watch ID
//! ```
//!
//! URL and token also come from `IRIS_API_URL` and `IRIS_API_TOKEN`.
//! Exit codes: 0 done; 1 the broker refused (its problem's detail is
//! printed) or the operation failed; 2 bad usage; 3 the broker could not be
//! reached.

use clap::{Parser, Subcommand, ValueEnum};
use iris_schemas::broker::{Node, Operation, OperationStatus, Page};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "irisctl",
    version,
    about = "Talk to the Iris HaaS broker (iris-api)"
)]
struct Cli {
    #[arg(long, env = "IRIS_API_URL", default_value = "http://127.0.0.1:8090")]
    url: String,
    #[arg(long, env = "IRIS_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file whose first line is the token.
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// For an https:// URL: the PEM file of the CA the broker's
    /// certificate chains to, trusted alone (without it, the system's
    /// roots).
    #[arg(long, env = "IRIS_CA_CERTIFICATE")]
    ca_certificate: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(subcommand)]
    Provider(ProviderCmd),
    #[command(subcommand)]
    Token(TokenCmd),
    #[command(subcommand)]
    Pm(PmCmd),
    #[command(subcommand)]
    Flavor(FlavorCmd),
    #[command(subcommand)]
    Vi(ViCmd),
    #[command(subcommand)]
    Node(NodeCmd),
    #[command(subcommand)]
    Op(OpCmd),
}

#[derive(Debug, Subcommand)]
enum ProviderCmd {
    Create { name: String },
    List,
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Makes a token (printed once).
    Create {
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PmCmd {
    Register {
        name: String,
        #[arg(long)]
        vcpus: u32,
        #[arg(long)]
        memory_mib: u64,
        #[arg(long)]
        disk_gib: u64,
        #[arg(long)]
        underlay_ip: String,
        #[arg(long)]
        ovsdb: String,
        #[arg(long, default_value = "br-int")]
        bridge: String,
        #[arg(long, default_value = "netns")]
        driver: String,
        #[arg(long)]
        endpoint: Option<String>,
    },
    List,
    Deregister {
        name: String,
        #[arg(long)]
        drain: bool,
    },
}

#[derive(Debug, Subcommand)]
enum FlavorCmd {
    Create {
        name: String,
        #[arg(long)]
        vcpus: u32,
        #[arg(long)]
        memory_mib: u64,
        #[arg(long)]
        disk_gib: u64,
    },
    List,
}

#[derive(Debug, Subcommand)]
enum ViCmd {
    Create {
        name: String,
        /// The operator gateway's WAN address, IP or IP:PORT (its API).
        #[arg(long)]
        gateway: String,
        /// The operator gateway's `[gateway] name` (default: the VI's id).
        #[arg(long)]
        gateway_name: Option<String>,
        /// The argon2 hash of the token the operator's gateway presents to
        /// the HaaS gateways (`iris-gateway hash-token < TOKEN-FILE`, made
        /// once: every VI of one gateway carries the same hash).
        #[arg(long)]
        gateway_token_hash: Option<String>,
        /// FIRST-LAST
        #[arg(long)]
        vlans: String,
        #[arg(long, conflicts_with = "dhcp")]
        pool: Option<String>,
        #[arg(long)]
        dhcp: bool,
        #[arg(long)]
        ssh_key_file: Option<PathBuf>,
    },
    List,
    Show {
        id: String,
    },
    Delete {
        id: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCmd {
    /// Asks for COUNT nodes and, unless --no-wait, follows the operation.
    Request {
        #[arg(long)]
        vi: String,
        #[arg(long)]
        count: u32,
        #[arg(long)]
        flavor: String,
        #[arg(long)]
        pm: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        policy: Option<String>,
        #[arg(long)]
        no_wait: bool,
    },
    List {
        #[arg(long)]
        vi: Option<String>,
    },
    Show {
        id: String,
    },
    /// Deletes the node; with --drain, once the operator's cloud has
    /// moved its guests away (at most --drain-timeout seconds).
    Delete {
        id: String,
        #[arg(long)]
        drain: bool,
        #[arg(long, value_name = "SECS", requires = "drain")]
        drain_timeout: Option<u32>,
        #[arg(long)]
        no_wait: bool,
    },
    /// Moves the node to PM P, or to one placement picks, and unless
    /// --no-wait follows the operation.
    Migrate {
        id: String,
        #[arg(long)]
        pm: Option<String>,
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, Subcommand)]
enum OpCmd {
    Show {
        id: String,
    },
    /// Follows the operation with a progress bar until it ends.
    Watch {
        id: String,
    },
}

/// Why irisctl stops, and its exit code.
#[derive(Debug)]
enum Failure {
    Refused(String),
    Unreachable(String),
    Usage(String),
}

impl Failure {
    fn exit(self) -> ExitCode {
        let (code, text) = match self {
            Failure::Refused(t) => (1, t),
            Failure::Usage(t) => (2, t),
            Failure::Unreachable(t) => (3, t),
        };
        eprintln!("irisctl: {text}");
        ExitCode::from(code)
    }
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let mut req = self.http.request(
            method.clone(),
            format!("{}{path}", self.url.trim_end_matches('/')),
        );
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            let why = iris_controller::http_client::error_text(&e);
            let hint = if why.contains("UnknownIssuer") {
                " (give --ca-certificate the CA the broker's certificate chains to)"
            } else {
                ""
            };
            Failure::Unreachable(format!("{method} {}{path}: {why}{hint}", self.url))
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let mut msg = format!(
            "{status}: {}",
            value["detail"].as_str().unwrap_or(&value.to_string())
        );
        for e in value["errors"].as_array().into_iter().flatten() {
            msg.push_str(&format!(
                "\n  at {}: {}",
                e["pointer"].as_str().unwrap_or("?"),
                e["detail"].as_str().unwrap_or("")
            ));
        }
        Err(Failure::Refused(msg))
    }

    async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        self.send(reqwest::Method::POST, path, body).await
    }

    async fn delete(&self, path: &str) -> Result<Value, Failure> {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Every item of a paginated list.
    async fn all(&self, path: &str) -> Result<Vec<Value>, Failure> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page_path = match &marker {
                None => format!("{path}{sep}limit=1000"),
                Some(m) => format!("{path}{sep}limit=1000&marker={m}"),
            };
            let page: Page<Value> = serde_json::from_value(self.get(&page_path).await?)
                .map_err(|e| Failure::Refused(format!("an unexpected list: {e}")))?;
            items.extend(page.items);
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => return Ok(items),
            }
        }
    }

    /// Follows an operation to its end, with a progress bar on a terminal.
    async fn watch(&self, id: &str, show_bar: bool) -> Result<Operation, Failure> {
        let bar = if show_bar {
            indicatif::ProgressBar::new(0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} nodes {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(id.to_owned());
        loop {
            let op: Operation =
                serde_json::from_value(self.get(&format!("/v1/operations/{id}")).await?)
                    .map_err(|e| Failure::Refused(format!("an unexpected operation: {e}")))?;
            bar.set_length(op.total.into());
            bar.set_position(op.done.into());
            match &op.drain {
                Some(d) if d.guest_macs_remaining > 0 => bar.set_message(format!(
                    "{id}: draining, {} guest MAC(s) left",
                    d.guest_macs_remaining
                )),
                _ => bar.set_message(id.to_owned()),
            }
            if op.status != OperationStatus::Running {
                bar.finish_and_clear();
                return Ok(op);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Prints `rows` under `headers`, columns as wide as their widest cell.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let out: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", out.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r);
    }
}

fn cell(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A VI, and in a table what the operator's gateway is configured with:
/// each HaaS gateway's WAN address, the VI's GRE key, the gateway's name.
fn print_vi(output: Output, vi: &Value) {
    print(output, vi, &[]);
    if output != Output::Table {
        return;
    }
    for g in vi["haas_gateways"].as_array().into_iter().flatten() {
        println!(
            "point your gateway at HaaS gateway {} on {}: [[peer]] name = {}, wan_ip = {}; \
             [[vi]] gre_key = {}; your [gateway] name = {}",
            cell(g, "name"),
            cell(g, "wan_ip"),
            g["name"],
            g["wan_ip"],
            cell(g, "gre_key"),
            g["peer_name"]
        );
    }
}

fn print(output: Output, value: &Value, columns: &[&str]) {
    match (output, value) {
        (Output::Json, _) => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        (Output::Table, Value::Array(items)) => {
            table(
                columns,
                items
                    .iter()
                    .map(|i| columns.iter().map(|c| cell(i, c)).collect())
                    .collect(),
            );
        }
        (Output::Table, Value::Object(map)) => {
            let rows = map
                .iter()
                .map(|(k, v)| {
                    vec![
                        k.clone(),
                        if let Value::String(s) = v {
                            s.clone()
                        } else {
                            v.to_string()
                        },
                    ]
                })
                .collect();
            table(&["field", "value"], rows);
        }
        (Output::Table, other) => println!("{other}"),
    }
}

const NODE_COLUMNS: &[&str] = &[
    "id",
    "state",
    "pm",
    "mac",
    "ip",
    "management_address",
    "bridge",
    "mtu",
    "last_error",
];
const OP_COLUMNS: &[&str] = &["id", "kind", "status", "done", "total", "error"];

async fn finish(c: &Client, out: Output, op: Value, wait: bool) -> Result<(), Failure> {
    let id = op["id"].as_str().unwrap_or_default().to_owned();
    if !wait {
        print(out, &op, OP_COLUMNS);
        return Ok(());
    }
    let done = c.watch(&id, out == Output::Table).await?;
    let nodes: Vec<Node> = {
        let mut v = Vec::new();
        for n in &done.nodes {
            if let Ok(node) = c.get(&format!("/v1/nodes/{n}")).await {
                if let Ok(node) = serde_json::from_value(node) {
                    v.push(node);
                }
            }
        }
        v
    };
    let nodes_json = serde_json::to_value(&nodes).unwrap_or_default();
    match out {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({"operation": done, "nodes": nodes_json}))
                .unwrap_or_default()
        ),
        Output::Table => {
            if !nodes.is_empty() {
                print(out, &nodes_json, NODE_COLUMNS);
            }
            println!(
                "operation {id}: {:?}, {}/{}",
                done.status, done.done, done.total
            );
        }
    }
    match done.status {
        OperationStatus::Succeeded => Ok(()),
        _ => Err(Failure::Refused(format!(
            "operation {id} failed: {}",
            done.error.unwrap_or_default()
        ))),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(
            iris_api::config::read_token(f)
                .map_err(Failure::Usage)?
                .expose()
                .to_owned(),
        ),
        (None, None) => None,
    };
    if let (Some(ca), false) = (&cli.ca_certificate, cli.url.starts_with("https://")) {
        return Err(Failure::Usage(format!(
            "--ca-certificate {} is for an https:// broker, and {} is not one",
            ca.display(),
            cli.url
        )));
    }
    let http = iris_controller::http_client::trusting(
        reqwest::Client::builder(),
        cli.ca_certificate.as_deref(),
    )
    .map_err(Failure::Usage)?
    .build()
    .map_err(|e| Failure::Usage(iris_controller::http_client::error_text(&e)))?;
    let c = Client {
        http,
        url: cli.url.clone(),
        token,
    };
    let out = cli.output;
    match cli.command {
        Command::Provider(ProviderCmd::Create { name }) => print(
            out,
            &c.post("/v1/providers", Some(json!({"name": name}))).await?,
            &[],
        ),
        Command::Provider(ProviderCmd::List) => print(
            out,
            &Value::Array(c.all("/v1/providers").await?),
            &["id", "name"],
        ),
        Command::Token(TokenCmd::Create { provider, admin }) => {
            let path = match (provider, admin) {
                (Some(p), false) => format!("/v1/providers/{p}/tokens"),
                (Some(p), true) => format!("/v1/providers/{p}/tokens?admin=true"),
                (None, true) => "/v1/providers/-/tokens?admin=true".into(),
                (None, false) => {
                    return Err(Failure::Usage("name --provider ID, or --admin".into()))
                }
            };
            print(out, &c.post(&path, None).await?, &[]);
        }
        Command::Pm(PmCmd::Register {
            name,
            vcpus,
            memory_mib,
            disk_gib,
            underlay_ip,
            ovsdb,
            bridge,
            driver,
            endpoint,
        }) => {
            let body = json!({"name": name, "capacity": {"vcpus": vcpus, "memory_mib": memory_mib, "disk_gib": disk_gib},
                "underlay_ip": underlay_ip, "ovsdb": ovsdb, "bridge": bridge, "driver": driver, "endpoint": endpoint});
            print(out, &c.post("/v1/pms", Some(body)).await?, &[]);
        }
        Command::Pm(PmCmd::List) => {
            let pms = c.all("/v1/pms").await?;
            if out == Output::Json {
                print(out, &Value::Array(pms), &[]);
            } else {
                let rows = pms
                    .iter()
                    .map(|p| {
                        vec![
                            cell(p, "name"),
                            cell(p, "driver"),
                            format!("{}/{}", p["used"]["vcpus"], p["capacity"]["vcpus"]),
                            format!(
                                "{}/{}",
                                p["used"]["memory_mib"], p["capacity"]["memory_mib"]
                            ),
                            cell(p, "nodes"),
                            cell(p, "draining"),
                        ]
                    })
                    .collect();
                table(
                    &["name", "driver", "vcpus", "memory_mib", "nodes", "draining"],
                    rows,
                );
            }
        }
        Command::Pm(PmCmd::Deregister { name, drain }) => {
            c.delete(&with_flag(format!("/v1/pms/{name}"), "drain", drain))
                .await?;
        }
        Command::Flavor(FlavorCmd::Create {
            name,
            vcpus,
            memory_mib,
            disk_gib,
        }) => {
            let body = json!({"name": name, "vcpus": vcpus, "memory_mib": memory_mib, "disk_gib": disk_gib});
            print(out, &c.post("/v1/flavors", Some(body)).await?, &[]);
        }
        Command::Flavor(FlavorCmd::List) => print(
            out,
            &Value::Array(c.all("/v1/flavors").await?),
            &["name", "vcpus", "memory_mib", "disk_gib"],
        ),
        Command::Vi(ViCmd::Create {
            name,
            gateway,
            gateway_name,
            gateway_token_hash,
            vlans,
            pool,
            dhcp,
            ssh_key_file,
        }) => {
            let (first, last) = vlans
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
                .ok_or_else(|| {
                    Failure::Usage(format!("--vlans {vlans:?}: write FIRST-LAST, e.g. 100-199"))
                })?;
            let addressing = match (pool, dhcp) {
                (Some(cidr), false) => json!({"mode": "static_pool", "cidr": cidr}),
                (None, true) => json!({"mode": "dhcp"}),
                _ => return Err(Failure::Usage("give --pool CIDR or --dhcp".into())),
            };
            let key = match ssh_key_file {
                None => Value::Null,
                Some(f) => Value::String(
                    std::fs::read_to_string(&f)
                        .map_err(|e| Failure::Usage(format!("{}: {e}", f.display())))?
                        .trim()
                        .to_owned(),
                ),
            };
            let mut body = json!({"name": name, "gateway": gateway, "vlans": {"first": first, "last": last}, "addressing": addressing});
            if !key.is_null() {
                body["ssh_public_key"] = key;
            }
            if let Some(n) = gateway_name {
                body["gateway_name"] = Value::String(n);
            }
            if let Some(h) = gateway_token_hash {
                body["gateway_token_hash"] = Value::String(h);
            }
            print_vi(out, &c.post("/v1/vis", Some(body)).await?);
        }
        Command::Vi(ViCmd::List) => print(
            out,
            &Value::Array(c.all("/v1/vis").await?),
            &["id", "name", "tunnel_key", "gateway", "nodes"],
        ),
        Command::Vi(ViCmd::Show { id }) => print_vi(out, &c.get(&format!("/v1/vis/{id}")).await?),
        Command::Vi(ViCmd::Delete { id, force }) => {
            c.delete(&with_flag(format!("/v1/vis/{id}"), "force", force))
                .await?;
        }
        Command::Node(NodeCmd::Request {
            vi,
            count,
            flavor,
            pm,
            group,
            policy,
            no_wait,
        }) => {
            let body = json!({"vi": vi, "count": count, "flavor": flavor,
                "placement": {"pm": pm, "group": group, "policy": policy}});
            let mut body = body;
            if let Some(p) = body["placement"].as_object_mut() {
                p.retain(|_, v| !v.is_null());
            }
            let op = c.post("/v1/nodes", Some(body)).await?;
            finish(&c, out, op, !no_wait).await?;
        }
        Command::Node(NodeCmd::List { vi }) => {
            let path = vi.map_or_else(|| "/v1/nodes".to_owned(), |v| format!("/v1/nodes?vi={v}"));
            print(out, &Value::Array(c.all(&path).await?), NODE_COLUMNS);
        }
        Command::Node(NodeCmd::Show { id }) => {
            print(out, &c.get(&format!("/v1/nodes/{id}")).await?, &[])
        }
        Command::Node(NodeCmd::Delete {
            id,
            drain,
            drain_timeout,
            no_wait,
        }) => {
            let mut path = with_flag(format!("/v1/nodes/{id}"), "drain", drain);
            if let Some(secs) = drain_timeout {
                path.push_str(&format!("&drain_timeout_secs={secs}"));
            }
            let op = c.delete(&path).await?;
            finish(&c, out, op, !no_wait).await?;
        }
        Command::Node(NodeCmd::Migrate { id, pm, no_wait }) => {
            let body = pm.map_or_else(|| json!({}), |p| json!({"pm": p}));
            let answer = c
                .post(&format!("/v1/nodes/{id}/migrate"), Some(body))
                .await?;
            // A node already on the PM asked for is the answer itself.
            if answer.get("kind").is_none() {
                print(out, &answer, NODE_COLUMNS);
            } else {
                finish(&c, out, answer, !no_wait).await?;
            }
        }
        Command::Op(OpCmd::Show { id }) => {
            print(out, &c.get(&format!("/v1/operations/{id}")).await?, &[])
        }
        Command::Op(OpCmd::Watch { id }) => {
            let op = c.get(&format!("/v1/operations/{id}")).await?;
            finish(&c, out, op, true).await?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        return Failure::Usage("cannot start the runtime".into()).exit();
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.exit(),
    }
}

/// `path` with `?flag=true` when `on`: the API's opt-in query flags (a PM's
/// drain, a VI's forced delete) are sent only when asked for.
fn with_flag(path: String, flag: &str, on: bool) -> String {
    if on {
        format!("{path}?{flag}=true")
    } else {
        path
    }
}
