//! The D-Bus API as a system app uses it: every Astarte type, objects, properties, the typed
//! errors, and the introspection XML kept in the repository.

mod common;

use std::collections::HashMap;

use bson::RawDocumentBuf;
use bson::spec::ElementType;
use common::*;
use zbus::zvariant::{Array, OwnedValue, Value};

const T: i64 = 1_537_449_422_890;

fn element_type(payload: &[u8], key: &str) -> ElementType {
    let document = RawDocumentBuf::from_bytes(payload.to_vec()).expect("valid BSON");
    document
        .get(key)
        .expect("readable")
        .unwrap_or_else(|| panic!("no {key:?} in payload"))
        .element_type()
}

fn array_element_types(payload: &[u8]) -> Vec<ElementType> {
    let document = RawDocumentBuf::from_bytes(payload.to_vec()).unwrap();
    let array = document.get_array("v").expect("v is an array");
    array
        .into_iter()
        .map(|element| element.unwrap().element_type())
        .collect()
}

#[tokio::test]
async fn every_astarte_type_arrives_with_its_topic_qos_and_bson_type() {
    let env = TestEnv::new().await;
    let mut observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;

    let cases: Vec<(&str, Value<'static>, ElementType, Option<ElementType>)> = vec![
        ("double", Value::F64(21.5), ElementType::Double, None),
        (
            "integer",
            Value::I32(-2_147_483_647),
            ElementType::Int32,
            None,
        ),
        ("integer", Value::U8(7), ElementType::Int32, None),
        ("boolean", Value::Bool(true), ElementType::Boolean, None),
        ("longinteger", Value::I64(5), ElementType::Int64, None),
        ("longinteger", Value::I32(5), ElementType::Int64, None),
        ("string", Value::from("héllo"), ElementType::String, None),
        (
            "binaryblob",
            Value::from(vec![1u8, 2, 3]),
            ElementType::Binary,
            None,
        ),
        ("datetime", Value::I64(T), ElementType::DateTime, None),
        (
            "doublearray",
            Value::from(vec![1.0f64, 2.5]),
            ElementType::Array,
            Some(ElementType::Double),
        ),
        (
            "integerarray",
            Value::from(vec![1i32, -2]),
            ElementType::Array,
            Some(ElementType::Int32),
        ),
        (
            "booleanarray",
            Value::from(vec![true, false]),
            ElementType::Array,
            Some(ElementType::Boolean),
        ),
        (
            "longintegerarray",
            Value::from(vec![1i64, i64::MAX]),
            ElementType::Array,
            Some(ElementType::Int64),
        ),
        (
            "stringarray",
            Value::from(vec!["a", "b"]),
            ElementType::Array,
            Some(ElementType::String),
        ),
        (
            "binaryblobarray",
            Value::Array(Array::from(vec![vec![1u8], vec![2u8, 3]])),
            ElementType::Array,
            Some(ElementType::Binary),
        ),
        (
            "datetimearray",
            Value::from(vec![T, T + 1]),
            ElementType::Array,
            Some(ElementType::DateTime),
        ),
    ];
    for (name, value, bson_type, element) in cases {
        let path = format!("/sensors/s1/{name}");
        proxy
            .send_at(DEVICE_DATASTREAM, &path, &value, T)
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        let message = observed(&mut observer, &env.topic(DEVICE_DATASTREAM, &path)).await;
        assert_eq!(message.qos, 1, "{name}: guaranteed is QoS 1");
        assert!(!message.retain, "{name}: never retained");
        assert_eq!(element_type(&message.payload, "v"), bson_type, "{name}");
        assert_eq!(
            element_type(&message.payload, "t"),
            ElementType::DateTime,
            "{name}: t is a BSON datetime"
        );
        let document = astarte_sandbox::decode_bson(&message.payload).unwrap();
        assert_eq!(document.get_datetime("t").unwrap().timestamp_millis(), T);
        if let Some(element) = element {
            assert!(
                array_element_types(&message.payload)
                    .iter()
                    .all(|found| *found == element),
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn values_round_trip_exactly() {
    let env = TestEnv::new().await;
    let mut observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    proxy
        .send_at(
            DEVICE_DATASTREAM,
            "/sensors/a/string",
            &Value::from("ünïcode ✓"),
            T,
        )
        .await
        .unwrap();
    proxy
        .send_at(
            DEVICE_DATASTREAM,
            "/sensors/a/longintegerarray",
            &Value::from(vec![i64::MAX, -i64::MAX, 0]),
            T,
        )
        .await
        .unwrap();
    let string = observed(
        &mut observer,
        &env.topic(DEVICE_DATASTREAM, "/sensors/a/string"),
    )
    .await;
    assert_eq!(
        astarte_sandbox::decode_bson(&string.payload)
            .unwrap()
            .get_str("v")
            .unwrap(),
        "ünïcode ✓"
    );
    let array = observed(
        &mut observer,
        &env.topic(DEVICE_DATASTREAM, "/sensors/a/longintegerarray"),
    )
    .await;
    let values: Vec<i64> = astarte_sandbox::decode_bson(&array.payload)
        .unwrap()
        .get_array("v")
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(values, [i64::MAX, -i64::MAX, 0]);
}

#[tokio::test]
async fn reliability_sets_the_qos_and_explicit_timestamp_decides_t() {
    let env = TestEnv::new().await;
    let mut observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    proxy
        .send(DEVICE_DATASTREAM, "/qos/unreliable", &Value::I32(1))
        .await
        .unwrap();
    proxy
        .send(DEVICE_DATASTREAM, "/qos/unique", &Value::I32(2))
        .await
        .unwrap();
    proxy
        .send(DEVICE_DATASTREAM, "/sensors/s/double", &Value::F64(3.0))
        .await
        .unwrap();
    let unreliable = observed(
        &mut observer,
        &env.topic(DEVICE_DATASTREAM, "/qos/unreliable"),
    )
    .await;
    let unique = observed(&mut observer, &env.topic(DEVICE_DATASTREAM, "/qos/unique")).await;
    let stamped = observed(
        &mut observer,
        &env.topic(DEVICE_DATASTREAM, "/sensors/s/double"),
    )
    .await;
    assert_eq!((unreliable.qos, unique.qos), (0, 2));
    let unstamped = astarte_sandbox::decode_bson(&unique.payload).unwrap();
    assert!(
        !unstamped.contains_key("t"),
        "no t without explicit_timestamp"
    );
    assert_eq!(
        element_type(&stamped.payload, "t"),
        ElementType::DateTime,
        "Send stamps explicit_timestamp mappings with the call time"
    );
}

#[tokio::test]
async fn object_aggregation_is_one_document_on_the_endpoint_prefix() {
    let env = TestEnv::new().await;
    let mut observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let values = HashMap::from([
        ("temperature", Value::F64(25.5)),
        ("humidity", Value::F64(67.1)),
        ("label", Value::from("kitchen")),
    ]);
    proxy
        .send_object_at(DEVICE_OBJECT, "/room1", values, T)
        .await
        .unwrap();
    let message = observed(&mut observer, &env.topic(DEVICE_OBJECT, "/room1")).await;
    assert_eq!(message.qos, 2);
    let document = astarte_sandbox::decode_bson(&message.payload).unwrap();
    let object = document.get_document("v").unwrap();
    assert_eq!(object.get_f64("temperature").unwrap(), 25.5);
    assert_eq!(object.get_f64("humidity").unwrap(), 67.1);
    assert_eq!(object.get_str("label").unwrap(), "kitchen");
    assert_eq!(object.len(), 3);
    assert_eq!(document.get_datetime("t").unwrap().timestamp_millis(), T);
}

#[tokio::test]
async fn device_property_set_and_unset_reach_the_broker_and_get_property_follows() {
    let env = TestEnv::new().await;
    let mut observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    proxy
        .set_property(DEVICE_PROPERTIES, "/enabled", &Value::Bool(true))
        .await
        .unwrap();
    let set = observed(&mut observer, &env.topic(DEVICE_PROPERTIES, "/enabled")).await;
    assert_eq!(set.qos, 2, "properties are always QoS 2");
    assert!(
        astarte_sandbox::decode_bson(&set.payload)
            .unwrap()
            .get_bool("v")
            .unwrap()
    );
    assert_eq!(
        proxy
            .get_property(DEVICE_PROPERTIES, "/enabled")
            .await
            .unwrap(),
        OwnedValue::from(true)
    );

    proxy
        .unset_property(DEVICE_PROPERTIES, "/enabled")
        .await
        .unwrap();
    let unset = observed(&mut observer, &env.topic(DEVICE_PROPERTIES, "/enabled")).await;
    assert!(unset.payload.is_empty(), "an unset is an empty payload");
    assert_eq!(unset.qos, 2);
    assert_eq!(
        error_name(proxy.get_property(DEVICE_PROPERTIES, "/enabled").await),
        "org.astarte_platform.Agent1.Error.NotSet"
    );
}

#[tokio::test]
async fn read_only_properties_describe_the_device() {
    let env = TestEnv::new().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    assert_eq!(proxy.device_id().await.unwrap(), env.device_id);
    assert_eq!(proxy.realm().await.unwrap(), env.sandbox.realm());
    let expected: Vec<String> = INTROSPECTION.split(';').map(str::to_owned).collect();
    assert_eq!(proxy.interfaces().await.unwrap(), expected);
}

#[tokio::test]
async fn largest_message_the_broker_accepts_goes_through_and_one_byte_more_is_refused() {
    let env = TestEnv::new().await;
    let mut observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let topic = env.topic(DEVICE_DATASTREAM, "/plain/text");
    // remaining length = 2 + topic + 2 (packet id) + BSON {"v": string} (4 + 1 + 2 + 4 + len + 1 + 1)
    let fits = 65_535 - (2 + topic.len() + 2) - 13;
    let text = "x".repeat(fits);
    proxy
        .send(
            DEVICE_DATASTREAM,
            "/plain/text",
            &Value::from(text.as_str()),
        )
        .await
        .unwrap();
    let message = observed(&mut observer, &topic).await;
    assert_eq!(
        astarte_sandbox::decode_bson(&message.payload)
            .unwrap()
            .get_str("v")
            .unwrap()
            .len(),
        fits
    );
    let too_big = "x".repeat(fits + 1);
    assert_eq!(
        error_name(
            proxy
                .send(
                    DEVICE_DATASTREAM,
                    "/plain/text",
                    &Value::from(too_big.as_str())
                )
                .await
        ),
        "org.astarte_platform.Agent1.Error.TooLarge"
    );
}

#[tokio::test]
async fn bad_calls_get_typed_errors_and_the_agent_keeps_serving() {
    let env = TestEnv::new().await;
    let mut observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let error = |name: &str| format!("org.astarte_platform.Agent1.Error.{name}");

    assert_eq!(
        error_name(
            proxy
                .send("org.example.Missing", "/x", &Value::I32(1))
                .await
        ),
        error("UnknownInterface")
    );
    assert_eq!(
        error_name(proxy.send(DEVICE_DATASTREAM, "/nope", &Value::I32(1)).await),
        error("UnknownPath")
    );
    assert_eq!(
        error_name(
            proxy
                .send(DEVICE_DATASTREAM, "/sensors/a//x", &Value::I32(1))
                .await
        ),
        error("UnknownPath")
    );
    assert_eq!(
        error_name(
            proxy
                .send(DEVICE_DATASTREAM, "/sensors/a/double", &Value::from("1.0"))
                .await
        ),
        error("WrongType")
    );
    assert_eq!(
        error_name(
            proxy
                .send(
                    DEVICE_DATASTREAM,
                    "/sensors/a/integer",
                    &Value::I32(i32::MIN)
                )
                .await
        ),
        error("OutOfRange")
    );
    assert_eq!(
        error_name(
            proxy
                .send(
                    DEVICE_DATASTREAM,
                    "/sensors/a/integer",
                    &Value::I64(1 << 40)
                )
                .await
        ),
        error("OutOfRange")
    );
    assert_eq!(
        error_name(
            proxy
                .send(
                    DEVICE_DATASTREAM,
                    "/sensors/a/longinteger",
                    &Value::I64(i64::MIN)
                )
                .await
        ),
        error("OutOfRange")
    );
    assert_eq!(
        error_name(
            proxy
                .send(
                    DEVICE_DATASTREAM,
                    "/sensors/a/double",
                    &Value::F64(f64::NAN)
                )
                .await
        ),
        error("OutOfRange")
    );
    assert_eq!(
        error_name(
            proxy
                .send(
                    DEVICE_DATASTREAM,
                    "/sensors/a/binaryblob",
                    &Value::from(Vec::<u8>::new())
                )
                .await
        ),
        error("OutOfRange")
    );
    assert_eq!(
        error_name(
            proxy
                .send_at(DEVICE_DATASTREAM, "/plain/value", &Value::F64(1.0), T)
                .await
        ),
        error("UnexpectedTimestamp")
    );
    assert_eq!(
        error_name(
            proxy
                .send(SERVER_DATASTREAM, "/a/command", &Value::from("x"))
                .await
        ),
        error("WrongOwnership")
    );
    assert_eq!(
        error_name(
            proxy
                .send(DEVICE_OBJECT, "/room1/temperature", &Value::F64(1.0))
                .await
        ),
        error("WrongAggregation")
    );
    assert_eq!(
        error_name(
            proxy
                .send_object(DEVICE_DATASTREAM, "/sensors", HashMap::new())
                .await
        ),
        error("WrongAggregation")
    );
    let unknown_key = HashMap::from([("pressure", Value::F64(1.0))]);
    assert_eq!(
        error_name(
            proxy
                .send_object(DEVICE_OBJECT, "/room1", unknown_key)
                .await
        ),
        error("UnknownPath")
    );
    let wrong_key_type = HashMap::from([("label", Value::F64(1.0))]);
    assert_eq!(
        error_name(
            proxy
                .send_object(DEVICE_OBJECT, "/room1", wrong_key_type)
                .await
        ),
        error("WrongType")
    );
    assert_eq!(
        error_name(
            proxy
                .send(DEVICE_PROPERTIES, "/name", &Value::from("x"))
                .await
        ),
        error("WrongInterfaceType")
    );
    assert_eq!(
        error_name(
            proxy
                .set_property(DEVICE_DATASTREAM, "/plain/value", &Value::F64(1.0))
                .await
        ),
        error("WrongInterfaceType")
    );
    assert_eq!(
        error_name(
            proxy
                .set_property(SERVER_PROPERTIES, "/sampling", &Value::I32(1))
                .await
        ),
        error("WrongOwnership")
    );
    assert_eq!(
        error_name(proxy.unset_property(DEVICE_PROPERTIES, "/counter").await),
        error("UnsetNotAllowed")
    );
    assert_eq!(
        error_name(
            proxy
                .set_property(DEVICE_PROPERTIES, "/blob", &Value::from(Vec::<u8>::new()))
                .await
        ),
        error("OutOfRange")
    );

    // Still serving, and none of the refused calls reached the broker.
    proxy
        .send(DEVICE_DATASTREAM, "/plain/value", &Value::F64(9.0))
        .await
        .unwrap();
    observed(&mut observer, &env.topic(DEVICE_DATASTREAM, "/plain/value")).await;
    let device_topics: Vec<&str> = observer
        .history()
        .iter()
        .map(|m| m.topic.as_str())
        .filter(|t| t.contains(DEVICE_DATASTREAM) || t.contains(DEVICE_OBJECT))
        .collect();
    assert_eq!(
        device_topics,
        [env.topic(DEVICE_DATASTREAM, "/plain/value").as_str()]
    );
}

#[tokio::test]
async fn introspection_xml_in_the_repository_matches_the_running_service() {
    let env = TestEnv::new().await;
    let _agent = env.start_agent().await;
    let connection = env.bus.connection().await;
    let introspectable = zbus::fdo::IntrospectableProxy::builder(&connection)
        .destination("org.astarte_platform.Agent1")
        .unwrap()
        .path("/org/astarte_platform/Agent1")
        .unwrap()
        .build()
        .await
        .unwrap();
    let live = introspectable.introspect().await.unwrap();
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dbus/org.astarte_platform.Agent1.xml"
    ))
    .unwrap();
    let block = |xml: &str, name: &str| -> String {
        let start = xml
            .find(&format!("<interface name=\"{name}\">"))
            .expect("interface present");
        let end = start + xml[start..].find("</interface>").expect("closed") + "</interface>".len();
        strip_comments(&xml[start..end])
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    for name in [
        "org.astarte_platform.Agent1.Device",
        "org.astarte_platform.Agent1.Commands",
    ] {
        assert_eq!(
            block(&file, name),
            block(&live, name),
            "update dbus/org.astarte_platform.Agent1.xml (and docs/dbus-api.md) to match the service"
        );
    }
}

/// Removes `<!-- ... -->` (zbus renders doc comments as XML comments).
fn strip_comments(xml: &str) -> String {
    let mut rest = xml;
    let mut out = String::new();
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("-->")
            .map_or("", |end| &rest[start + end + 3..]);
    }
    out.push_str(rest);
    out
}
