use rstest::rstest;

use super::*;
use crate::data::{AstarteValue, decode_object};
use crate::topic::{MAX_REMAINING_LENGTH, Topics, remaining_length};

fn result(stdout: String, stderr: String) -> CommandResult {
    CommandResult {
        id: "x".repeat(MAX_ID_BYTES),
        status: Status::Interrupted,
        exit_code: i32::MAX,
        stdout,
        stderr,
        truncated: false,
        detail: "d".repeat(MAX_DETAIL_BYTES),
        timestamp_ms: 1_700_000_000_000,
    }
}

/// The longest topic a result can have: a 48-character realm.
fn longest_topic() -> String {
    Topics::new(&"r".repeat(48), "AJInS0w3VpWpuOqkXhgZdA").data(RESULTS_INTERFACE, RESULT_PATH)
}

#[test]
fn the_size_arithmetic_matches_the_encoder() {
    for result in [
        CommandResult::bare("a", Status::Received, "", 0),
        result("out\n".into(), "é".repeat(100)),
        CommandResult::bare("id-7", Status::Rejected, "unknown command \"x\"", 5),
    ] {
        assert_eq!(result.encode().unwrap().len(), result.encoded_len());
    }
}

#[test]
fn outputs_at_the_configurable_cap_fit_uncut_beside_the_longest_id_and_detail() {
    // Three-byte characters: the cap is in bytes, whatever the text.
    let at_cap = "€".repeat(MAX_OUTPUT_BYTES / 3);
    let full = result(at_cap.clone(), at_cap.clone());
    let payload = full.encode().unwrap();
    assert!(payload.len() <= PAYLOAD_BUDGET);
    assert!(remaining_length(&longest_topic(), 2, payload.len()) <= MAX_REMAINING_LENGTH);
    let mut fitted = full.clone();
    fitted.fit();
    assert_eq!(fitted, full, "nothing is cut below the cap");
}

#[rstest]
#[case::both_huge(60_000, 60_000)]
#[case::stdout_huge(65_000, 10)]
#[case::stderr_huge(3, 66_000)]
fn oversized_output_is_cut_to_fit_and_marked_truncated(#[case] out: usize, #[case] err: usize) {
    // A handler may report anything; multi-byte characters make cuts land mid-character.
    let full = result("ü".repeat(out / 2), "ü".repeat(err / 2));
    let payload = full.encode().unwrap();
    assert!(remaining_length(&longest_topic(), 2, payload.len()) <= MAX_REMAINING_LENGTH);
    let interface = &interfaces().unwrap()[1];
    let decoded = decode_object(&payload, |key| {
        interface
            .object_mappings(RESULT_PATH)
            .ok()?
            .into_iter()
            .find(|(name, _)| *name == key)
            .map(|(_, mapping)| mapping.mapping_type)
    })
    .unwrap();
    let text = |key: &str| match &decoded
        .values
        .iter()
        .find(|(name, _)| name == key)
        .unwrap()
        .1
    {
        AstarteValue::String(text) => text.clone(),
        other => panic!("{key}: {other:?}"),
    };
    assert!(full.stdout.starts_with(&text("stdout")));
    assert!(full.stderr.starts_with(&text("stderr")));
    assert_eq!(
        decoded
            .values
            .iter()
            .find(|(name, _)| name == "truncated")
            .unwrap()
            .1,
        AstarteValue::Boolean(true)
    );
    // The short side keeps all of its output.
    if out.min(err) < 100 {
        assert!(text("stdout").len() + text("stderr").len() > 2 * MAX_OUTPUT_BYTES - 100);
    }
    assert_eq!(decoded.timestamp_ms, Some(full.timestamp_ms));
}

#[test]
fn every_key_is_always_sent_and_i32_min_is_no_exit_code() {
    let mut bare = CommandResult::bare("id", Status::Running, "", 0);
    bare.exit_code = i32::MIN;
    let values = bare.values();
    assert_eq!(values.len(), 7);
    assert_eq!(
        values[2],
        ("exitCode".into(), AstarteValue::Integer(NO_EXIT_CODE))
    );
}

#[test]
fn status_names_are_the_wire_names() {
    let names: Vec<&str> = Status::ALL.iter().map(|status| status.name()).collect();
    assert_eq!(
        names,
        [
            "received",
            "running",
            "completed",
            "failed",
            "rejected",
            "timeout",
            "interrupted"
        ]
    );
    for status in Status::ALL {
        assert_eq!(Status::from_name(status.name()), Some(status));
    }
    assert!(!Status::Received.is_final() && !Status::Running.is_final());
}

#[test]
fn a_request_object_is_read_by_key_and_needs_a_usable_id() {
    let values = vec![
        ("id".to_owned(), AstarteValue::String("42".into())),
        ("command".to_owned(), AstarteValue::String("reboot".into())),
        (
            "args".to_owned(),
            AstarteValue::StringArray(vec!["now".into()]),
        ),
        ("timeoutSeconds".to_owned(), AstarteValue::Integer(5)),
    ];
    let request = CommandRequest::from_object(&values).unwrap();
    assert_eq!(request.id, "42");
    assert_eq!(request.args, ["now"]);
    assert_eq!(request.timeout_seconds, 5);
    assert_eq!(
        CommandRequest::from_object(&values[1..]),
        Err(RequestError::MissingId)
    );
    let long = vec![(
        "id".to_owned(),
        AstarteValue::String("i".repeat(MAX_ID_BYTES + 1)),
    )];
    assert!(matches!(
        CommandRequest::from_object(&long),
        Err(RequestError::IdTooLong(_))
    ));
}
