//! The low-level client against a real ovsdb-server.

// Test helpers may unwrap: a panic there is the test failing, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::OvsdbServer;
use ovsdb::error::FailedAt;
use ovsdb::ops::{Function, WaitUntil};
use ovsdb::update::MonitorRequest;
use ovsdb::{
    Client, Condition, Datum, Disconnect, Error, ErrorKind, Mutation, Mutator, Operation,
    OperationResult, Options, Remote, Row, Transaction,
};

const DB: &str = "Open_vSwitch";

fn add_bridge(name: &str) -> Transaction {
    let mut txn = Transaction::new();
    let bridge = txn.insert(
        "Bridge",
        Row::from([("name".to_owned(), Datum::string(name))]),
    );
    txn.mutate(
        "Open_vSwitch",
        vec![],
        vec![Mutation::new(
            "bridges",
            Mutator::Insert,
            Datum::Set(vec![bridge]),
        )],
    );
    txn
}

#[tokio::test]
async fn transacts_over_unix_and_tcp() {
    let server = OvsdbServer::start();
    for (remote, bridge) in [
        (server.unix_remote(), "br-unix"),
        (server.tcp_remote(), "br-tcp"),
    ] {
        let client = Client::connect(&remote).await.unwrap();
        assert!(client.list_dbs().await.unwrap().contains(&DB.to_owned()));

        let results = client.transact(DB, add_bridge(bridge).ops()).await.unwrap();
        let [OperationResult::Inserted(uuid), OperationResult::Count(1)] = results.as_slice()
        else {
            panic!("unexpected results {results:?}");
        };
        assert_eq!(
            server.vsctl(&format!("get Bridge {bridge} _uuid")),
            uuid.to_string()
        );

        let select = Operation::Select {
            table: "Bridge".into(),
            conditions: vec![Condition::new("name", Function::Eq, Datum::string(bridge))],
            columns: Some(vec!["name".into()]),
        };
        let rows = client.transact(DB, &[select]).await.unwrap();
        let [OperationResult::Rows(rows)] = rows.as_slice() else {
            panic!("{rows:?}")
        };
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["name"], Datum::string(bridge));
    }
    assert_eq!(server.vsctl("list-br"), "br-tcp\nbr-unix");
}

#[tokio::test]
async fn monitor_sees_what_ovs_vsctl_adds() {
    let server = OvsdbServer::start();
    let client = Client::connect(&server.unix_remote()).await.unwrap();
    let tables = BTreeMap::from([(
        "Interface".to_owned(),
        MonitorRequest::columns(&["name", "external_ids"]),
    )]);
    let mut monitor = client.monitor(DB, &tables).await.unwrap();
    assert!(monitor.take_initial().unwrap().is_empty());

    server.vsctl(
        "add-br br0 -- add-port br0 vm1 -- set Interface vm1 type=internal external_ids:iris-vi=42",
    );
    let vm1 = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let update = monitor.next().await.expect("session alive");
            let rows = update.get("Interface").into_iter().flat_map(|t| t.values());
            if let Some(new) = rows
                .filter_map(|u| u.new.clone())
                .find(|r| r["name"] == Datum::string("vm1"))
            {
                return new;
            }
        }
    })
    .await
    .expect("an update for vm1");
    assert_eq!(
        vm1["external_ids"].to_string_map().unwrap(),
        BTreeMap::from([("iris-vi".to_owned(), "42".to_owned())])
    );
}

#[tokio::test]
async fn server_errors_are_typed_and_say_what_to_do() {
    let server = OvsdbServer::start();
    server.vsctl("add-br br0");
    let client = Client::connect(&server.unix_remote()).await.unwrap();

    // A second bridge called br0 breaks the Bridge name index at commit.
    let Err(Error::Transaction(e)) = client.transact(DB, add_bridge("br0").ops()).await else {
        panic!("expected a transaction error");
    };
    assert_eq!(e.failed_at, FailedAt::Commit);
    assert_eq!(e.error.kind, ErrorKind::ConstraintViolation);
    assert!(
        e.error.details.as_deref().unwrap_or("").contains("br0"),
        "{e}"
    );
    assert!(e.to_string().contains("pick another name"), "{e}");

    // Deleting a port its bridge still references.
    let port = server.vsctl("get Port br0 _uuid").parse().unwrap();
    let delete = Operation::Delete {
        table: "Port".into(),
        conditions: vec![Condition::uuid(port)],
    };
    let Err(Error::Transaction(e)) = client.transact(DB, &[delete]).await else {
        panic!("expected a transaction error");
    };
    assert_eq!(e.error.kind, ErrorKind::ReferentialIntegrityViolation);
    assert!(e.to_string().contains("remove the reference first"), "{e}");
    assert_eq!(server.vsctl("list-ports br0"), "", "nothing was committed");
    assert_eq!(server.vsctl("get Port br0 _uuid"), port.to_string());

    let Err(Error::Rpc { error, .. }) = client.transact("Nope", &[]).await else {
        panic!("expected an RPC error");
    };
    assert_eq!(error.kind, ErrorKind::UnknownDatabase);
    assert!(
        error.to_string().contains("check the database name"),
        "{error}"
    );

    // The session survives rejected requests.
    assert!(client.list_dbs().await.is_ok());
}

#[tokio::test]
async fn bad_remotes_fail_with_what_to_check() {
    let err = "tcp:localhost:6640".parse::<Remote>().unwrap_err();
    assert!(err.to_string().contains("not an IP address"), "{err}");

    let missing: Remote = "unix:/nonexistent/iris/db.sock".parse().unwrap();
    let Err(e @ Error::Connect { .. }) = Client::connect(&missing).await else {
        panic!("expected a connect error");
    };
    assert!(e.to_string().contains("--remote=punix:"), "{e}");

    // A port nobody listens on: bound and held, never listened on, so
    // that no other test's server can take it meanwhile.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = held.local_addr().unwrap().port();
    let closed: Remote = format!("tcp:127.0.0.1:{port}").parse().unwrap();
    let Err(e @ Error::Connect { .. }) = Client::connect(&closed).await else {
        panic!("expected a connect error");
    };
    assert!(e.to_string().contains("--remote=ptcp:"), "{e}");
    drop(held);
}

/// A transaction the server holds open: a `wait` whose condition never holds.
fn blocking_wait() -> Operation {
    Operation::Wait {
        table: "Bridge".into(),
        conditions: vec![Condition::eq("name", Datum::string("never"))],
        columns: vec!["name".into()],
        until: WaitUntil::Equal,
        rows: vec![Row::from([("name".to_owned(), Datum::string("never"))])],
        timeout_ms: Some(60_000),
    }
}

#[tokio::test]
async fn server_killed_mid_transaction_is_an_error_not_a_hang() {
    let mut server = OvsdbServer::start();
    let client = Client::connect(&server.tcp_remote()).await.unwrap();
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.transact(DB, &[blocking_wait()]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pending.is_finished(),
        "the wait should hold the transaction open"
    );
    let killed = Instant::now();
    server.kill();
    let result = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("no hang");
    let Err(Error::Disconnected(reason)) = result.unwrap() else {
        panic!("expected Disconnected")
    };
    assert!(
        matches!(reason, Disconnect::ClosedByServer | Disconnect::Io { .. }),
        "unexpected reason {reason:?}"
    );
    assert!(killed.elapsed() < Duration::from_secs(2));
    assert_eq!(client.closed().await, reason);
    let Err(Error::Disconnected(_)) = client.list_dbs().await else {
        panic!("expected Disconnected")
    };
}

#[tokio::test]
async fn frozen_server_is_found_out_by_the_probe() {
    let server = OvsdbServer::start();
    let options = Options {
        probe_interval: Some(Duration::from_millis(300)),
        ..Options::default()
    };
    let client = Client::connect_with(&server.unix_remote(), options)
        .await
        .unwrap();
    client.list_dbs().await.unwrap();
    server.freeze();
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), client.list_dbs())
        .await
        .expect("no hang");
    let Err(Error::Disconnected(Disconnect::ProbeTimeout { .. })) = result else {
        panic!("expected a probe timeout, got {result:?}");
    };
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn idle_tcp_session_outlives_the_servers_inactivity_probe() {
    let server = OvsdbServer::start();
    // Our own probe off: only answering the server's echo keeps the session.
    let options = Options {
        probe_interval: None,
        ..Options::default()
    };
    let client = Client::connect_with(&server.tcp_remote(), options)
        .await
        .unwrap();
    client.list_dbs().await.unwrap();
    // ovsdb-server probes a quiet TCP client after 5 s and drops it 5 s later.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(client.list_dbs().await.is_ok());
    assert!(client.disconnect_reason().is_none());
    assert!(
        !server.log().contains("no response to inactivity probe"),
        "{}",
        server.log()
    );
}
