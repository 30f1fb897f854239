//! Requests that come through the router are acknowledged once they are in the ledger.

use super::*;
use crate::data::AstarteValue;
use crate::router::ServerEvent;
use crate::router::{Disposition, Router, ServerEvents};

fn request_object(id: Option<&str>, command: &str) -> ServerEvent {
    let mut values = vec![("command".to_owned(), AstarteValue::String(command.into()))];
    if let Some(id) = id {
        values.push(("id".to_owned(), AstarteValue::String(id.into())));
    }
    ServerEvent::Object {
        interface: REQUESTS_INTERFACE.into(),
        path: REQUEST_PATH.into(),
        values,
        timestamp_ms: 0,
    }
}

#[tokio::test]
async fn a_routed_request_is_confirmed_once_in_the_ledger_and_an_unanswerable_one_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Harness::start(dir.path(), options(2, vec![("ok", shell("true"))])).await;
    let (signals, _unused) = tokio::sync::mpsc::channel(1);
    let (router, mut confirmations) =
        Router::new(ServerEvents::new(signals), vec![engine.route.clone()]);

    let Disposition::Pending(receipt) = router.route(vec![request_object(Some("1"), "ok")]) else {
        panic!("routed to the commands engine");
    };
    let confirmed = tokio::time::timeout(HANG_GUARD, confirmations.recv())
        .await
        .unwrap();
    assert_eq!(confirmed, Some(receipt));
    let in_ledger = engine.store.commands_recent(10).await.unwrap();
    assert_eq!(
        in_ledger[0].last.id, "1",
        "in the ledger before it is confirmed"
    );
    assert_eq!(
        engine.until_final("1").await.pop().unwrap().status,
        Status::Completed
    );

    let Disposition::Pending(receipt) = router.route(vec![request_object(None, "ok")]) else {
        panic!("routed to the commands engine");
    };
    let confirmed = tokio::time::timeout(HANG_GUARD, confirmations.recv())
        .await
        .unwrap();
    assert_eq!(
        confirmed,
        Some(receipt),
        "no id: dropped, and not delivered again"
    );
    engine.stop().await;
}
