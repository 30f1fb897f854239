//! Astarte MQTT v1 payloads as a test or the demo wants to read them: BSON documents, zlib
//! purge lists (4-byte big-endian length + zlib stream), introspection text.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

/// The server inflates at most 10 MiB; so does this decoder.
const MAX_PURGE_LIST: u64 = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not a BSON document")]
    Bson(#[source] bson::error::Error),
    #[error("purge list is shorter than its 4-byte header")]
    PurgeListHeader,
    #[error("purge list is not a valid zlib stream")]
    PurgeListInflate(#[source] std::io::Error),
    #[error("purge list is not UTF-8")]
    PurgeListText,
}

pub fn decode_bson(payload: &[u8]) -> Result<bson::Document, PayloadError> {
    bson::Document::from_reader(payload).map_err(PayloadError::Bson)
}

/// The `<interface><path>` entries of a zlib purge list (an empty list gives no entries).
pub fn decode_purge_list(payload: &[u8]) -> Result<Vec<String>, PayloadError> {
    // Astarte skips the length header without reading it; so do we.
    let stream = payload.get(4..).ok_or(PayloadError::PurgeListHeader)?;
    if stream.is_empty() {
        return Ok(Vec::new());
    }
    let mut text = Vec::new();
    ZlibDecoder::new(stream)
        .take(MAX_PURGE_LIST)
        .read_to_end(&mut text)
        .map_err(PayloadError::PurgeListInflate)?;
    let text = String::from_utf8(text).map_err(|_| PayloadError::PurgeListText)?;
    Ok(split_entries(&text))
}

/// A zlib purge list, as Astarte sends on `control/consumer/properties`.
pub fn encode_purge_list(entries: &[&str]) -> Vec<u8> {
    let text = entries.join(";");
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    let mut out = len.to_be_bytes().to_vec();
    let mut encoder = ZlibEncoder::new(&mut out, Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(text.as_bytes());
    let _ = encoder.finish();
    out
}

/// A one-line human rendering of a message of the realm, for the demo: BSON as relaxed
/// extended JSON, purge lists and introspection as text.
pub fn describe(topic: &str, payload: &[u8]) -> String {
    let levels = topic.split('/').count();
    let text = || String::from_utf8_lossy(payload).into_owned();
    if payload.is_empty() {
        return "(empty: unset)".to_owned();
    }
    if levels == 2 {
        return format!("introspection {}", text());
    }
    if topic.ends_with("/control/producer/properties")
        || topic.ends_with("/control/consumer/properties")
    {
        return match decode_purge_list(payload) {
            Ok(entries) => format!("purge list [{}]", entries.join(";")),
            Err(_) => format!("purge list (plaintext?) {}", text()),
        };
    }
    if topic.ends_with("/control/emptyCache") {
        return format!("emptyCache {}", text());
    }
    match decode_bson(payload) {
        Ok(doc) => bson::Bson::Document(doc).into_relaxed_extjson().to_string(),
        Err(_) => format!("(not BSON) {}", hex(payload)),
    }
}

fn split_entries(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    text.split(';').map(str::to_owned).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const VECTOR: &str = "com.example.MyInterface/some/path;org.example.DraftInterface/otherPath";

    #[test]
    fn purge_list_round_trips_and_starts_with_its_length() {
        let encoded = encode_purge_list(&VECTOR.split(';').collect::<Vec<_>>());
        assert_eq!(encoded[..6], [0x00, 0x00, 0x00, 0x46, 0x78, 0x9c]);
        assert_eq!(
            decode_purge_list(&encoded).unwrap(),
            VECTOR.split(';').collect::<Vec<_>>()
        );
    }

    #[rstest]
    #[case::reference_empty(&[0, 0, 0, 0, 0x78, 0x9c, 0x03, 0, 0, 0, 0, 0x01])]
    #[case::bare_header(&[0, 0, 0, 0])]
    fn empty_purge_lists_have_no_entries(#[case] payload: &[u8]) {
        assert!(decode_purge_list(payload).unwrap().is_empty());
    }

    #[test]
    fn reference_purge_list_vector_decodes() {
        let hex = "00000046789c4bcecfd54bad48cc2dc849d5f3adf4cc2b492d4a4b4c4ed52fcecf4dd52f482cc9b0ce2f4a87ab70294a4c2b4128ca2fc9482d0a002a0200b20c1ac9";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(decode_purge_list(&bytes).unwrap().join(";"), VECTOR);
    }

    #[test]
    fn bson_reference_vector_decodes() {
        let bytes = [0x09, 0, 0, 0, 0x08, 0x76, 0, 0x01, 0];
        assert!(decode_bson(&bytes).unwrap().get_bool("v").unwrap());
    }

    #[rstest]
    #[case(
        "test/dev",
        b"org.A:1:0;org.B:0:2",
        "introspection org.A:1:0;org.B:0:2"
    )]
    #[case("test/dev/org.A/p", b"", "(empty: unset)")]
    #[case("test/dev/org.A/p", &[0x09, 0, 0, 0, 0x08, 0x76, 0, 0x01, 0], r#"{"v":true}"#)]
    #[case("test/dev/control/emptyCache", b"1", "emptyCache 1")]
    fn messages_are_described_by_topic(
        #[case] topic: &str,
        #[case] payload: &[u8],
        #[case] text: &str,
    ) {
        assert_eq!(describe(topic, payload), text);
    }
}
