//! Server data goes to its owner and is acknowledged once the owner has it safe.

use rumqttc::{Incoming, Publish, QoS};

use super::*;

fn server_publish(interface: &str, pkid: u16, payload: Vec<u8>) -> Incoming {
    let mut publish = Publish::new(
        format!("{BASE}/{interface}/a/value"),
        QoS::AtLeastOnce,
        payload,
    );
    publish.pkid = pkid;
    Incoming::Publish(publish)
}

fn integer(value: i32) -> Vec<u8> {
    encode_individual(&AstarteValue::Integer(value), None).unwrap()
}

fn command(name: &str) -> Vec<u8> {
    encode_individual(&AstarteValue::String(name.into()), None).unwrap()
}

/// A feature confirms the receipt of what it was handed; the run loop gets the confirmation.
fn confirm_routed(rig: &Rig, session: &mut Session) {
    let routed = rig.commands.lock().unwrap().try_recv().unwrap();
    routed.receipt.confirm();
    let receipt = rig
        .context
        .confirmations
        .try_lock()
        .unwrap()
        .try_recv()
        .unwrap();
    session.on_confirmed(receipt);
}

fn requests(rig: &Rig) -> Vec<String> {
    rig.requests().iter().map(describe).collect()
}

#[test]
fn server_data_is_routed_to_the_signals_and_acknowledged() {
    let rig = Rig::new();
    let mut session = rig.ready_session();

    rig.incoming(&mut session, server_publish(SETTINGS, 9, integer(5)));

    assert_eq!(requests(&rig), ["puback 9"]);
    let signal = rig.signals.lock().unwrap().try_recv().unwrap();
    assert!(
        matches!(&signal, ServerEvent::Value { interface, path, value: AstarteValue::Integer(5), .. }
            if interface == SETTINGS && path == "/a/value"),
        "{signal:?}"
    );
    assert_eq!(
        rig.context.properties.get(SETTINGS, "/a/value"),
        Some(AstarteValue::Integer(5))
    );
}

#[test]
fn malformed_server_data_is_acknowledged_and_dropped() {
    let rig = Rig::new();
    let mut session = rig.ready_session();

    rig.incoming(
        &mut session,
        server_publish(SETTINGS, 9, b"not bson".to_vec()),
    );

    assert_eq!(
        requests(&rig),
        ["puback 9"],
        "sending it again would not help"
    );
    assert!(rig.signals.lock().unwrap().try_recv().is_err());
    assert_eq!(rig.context.properties.get(SETTINGS, "/a/value"), None);
}

#[test]
fn server_data_for_a_feature_is_acknowledged_only_when_its_receipt_is_confirmed() {
    let rig = Rig::new();
    let mut session = rig.ready_session();

    rig.incoming(&mut session, server_publish(COMMANDS, 9, command("reboot")));
    assert!(rig.requests().is_empty());
    assert!(
        rig.signals.lock().unwrap().try_recv().is_err(),
        "not a signal"
    );

    confirm_routed(&rig, &mut session);
    assert_eq!(requests(&rig), ["puback 9"]);
}

#[test]
fn a_receipt_confirmed_after_the_connection_was_lost_is_not_acknowledged() {
    let rig = Rig::new();
    let mut session = rig.ready_session();
    rig.incoming(&mut session, server_publish(COMMANDS, 9, command("reboot")));

    rig.lose(&mut session);
    rig.connect(&mut session, true);
    confirm_routed(&rig, &mut session);

    assert!(
        rig.requests().is_empty(),
        "the broker delivers it again on the new connection"
    );
}

#[test]
fn server_data_its_feature_cannot_take_now_stays_unacknowledged() {
    let rig = Rig::new();
    let mut session = rig.ready_session();

    rig.incoming(&mut session, server_publish(COMMANDS, 9, command("reboot")));
    rig.incoming(&mut session, server_publish(COMMANDS, 10, command("halt")));
    confirm_routed(&rig, &mut session);

    assert_eq!(requests(&rig), ["puback 9"]);
    assert!(rig.commands.lock().unwrap().try_recv().is_err());
}
