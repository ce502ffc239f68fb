//! `transcoder topology remove`: a prefix's queues and exchanges, gone.

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};

use crate::helpers::*;

/// Which of the names exist (passive declares, one channel each).
async fn existing(conn: &Connection, queues: &[String], exchanges: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for q in queues {
        let ch = conn.create_channel().await.unwrap();
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        if ch.queue_declare(q.as_str().into(), passive, FieldTable::default()).await.is_ok() {
            found.push(q.clone());
        }
    }
    for x in exchanges {
        let ch = conn.create_channel().await.unwrap();
        let passive = ExchangeDeclareOptions { passive: true, ..Default::default() };
        if ch.exchange_declare(x.as_str().into(), ExchangeKind::Direct, passive, FieldTable::default()).await.is_ok() {
            found.push(x.clone());
        }
    }
    found
}

#[tokio::test]
async fn removing_a_prefix_deletes_every_queue_and_exchange_the_service_declared_and_asks_first() {
    let app = spawn_app().await;
    let p = &app.prefix;
    let queues = [format!("{p}.jobs"), format!("{p}.jobs.dead"), format!("{p}.notify.default.log")];
    let exchanges =
        [format!("{p}.jobs"), format!("{p}.jobs.dlx"), format!("{p}.control"), format!("{p}.notify.default")];
    let conn = Connection::connect(AMQP_URL, Default::default()).await.unwrap();
    assert_eq!(existing(&conn, &queues, &exchanges).await.len(), 7, "the service declares its topology");

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_transcoder"))
        .args(["topology", "remove"])
        .env("TRANSCODER__AMQP__PREFIX", p)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pass --yes"));
    assert_eq!(existing(&conn, &queues, &exchanges).await.len(), 7, "nothing removed without --yes");

    remove_topology(p, &[]);
    assert_eq!(existing(&conn, &queues, &exchanges).await, Vec::<String>::new());
    let _ = conn.close(200, "".into()).await;
}
