//! Purge-properties lists (protocol doc, section 3.6): `iface/path` entries joined by `;`,
//! sent as a 4-byte big-endian uncompressed length followed by a zlib stream (capability
//! `zlib`, the default). The `plaintext` capability format is the raw text and needs no codec.

use std::io::{Read, Write};

use flate2::{Compression, read::ZlibDecoder, write::ZlibEncoder};
use thiserror::Error;

/// Astarte refuses to inflate more than this; so do we, to survive a zip bomb.
pub const MAX_INFLATED_LEN: usize = 10_485_760;

const HEADER_LEN: usize = 4;

/// Why a received purge list could not be read.
#[derive(Debug, Error)]
pub enum PurgeError {
    #[error("purge list is {len} bytes, shorter than its 4-byte header")]
    MissingHeader { len: usize },
    #[error("couldn't inflate the purge list")]
    Inflate(#[source] std::io::Error),
    #[error("inflated purge list exceeds {max} bytes")]
    TooLarge { max: usize },
    #[error("purge list is not valid utf-8")]
    NotUtf8(#[source] std::string::FromUtf8Error),
}

/// Encodes a purge list. Entries are `interface` immediately followed by the path (which starts
/// with `/`); they must not contain `;`, which interface names and paths never do.
pub fn encode_purge_list(entries: &[String]) -> Vec<u8> {
    let text = entries.join(";");
    // Astarte skips the header without reading it, so saturating is harmless.
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    let mut encoder = ZlibEncoder::new(len.to_be_bytes().to_vec(), Compression::default());
    // Writing into a Vec cannot fail.
    encoder
        .write_all(text.as_bytes())
        .expect("zlib into a Vec is infallible");
    encoder.finish().expect("zlib into a Vec is infallible")
}

/// Decodes a purge list. The header's value is ignored (the Python SDK writes it
/// little-endian); the exact payload `00 00 00 00` is an empty list, as on the server. Empty
/// entries (from `;;` or a trailing `;`) are dropped.
pub fn decode_purge_list(payload: &[u8]) -> Result<Vec<String>, PurgeError> {
    let Some(compressed) = payload.get(HEADER_LEN..) else {
        return Err(PurgeError::MissingHeader { len: payload.len() });
    };
    if compressed.is_empty() {
        return Ok(Vec::new());
    }
    let mut inflated = Vec::new();
    // One byte past the cap tells "exactly at the cap" from "over it" without inflating more.
    ZlibDecoder::new(compressed)
        .take(MAX_INFLATED_LEN as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(PurgeError::Inflate)?;
    if inflated.len() > MAX_INFLATED_LEN {
        return Err(PurgeError::TooLarge {
            max: MAX_INFLATED_LEN,
        });
    }
    let text = String::from_utf8(inflated).map_err(PurgeError::NotUtf8)?;
    Ok(text
        .split(';')
        .filter(|entry| !entry.is_empty())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|byte| u8::from_str_radix(byte, 16).unwrap())
            .collect()
    }

    fn zlib_with_header(text: &[u8]) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(vec![0; HEADER_LEN], Compression::default());
        encoder.write_all(text).unwrap();
        encoder.finish().unwrap()
    }

    const VECTOR: &str = "00 00 00 46 78 9c 4b ce cf d5 4b ad 48 cc 2d c8 49 d5 f3 ad f4 cc 2b 49 \
        2d 4a 4b 4c 4e d5 2f ce cf 4d d5 2f 48 2c c9 b0 ce 2f 4a 87 ab 70 29 4a 4c 2b 41 28 ca 2f \
        c9 48 2d 0a 00 2a 02 00 b2 0c 1a c9";

    fn vector_entries() -> Vec<String> {
        vec![
            "com.example.MyInterface/some/path".to_owned(),
            "org.example.DraftInterface/otherPath".to_owned(),
        ]
    }

    #[test]
    fn protocol_doc_vector_is_decoded() {
        assert_eq!(decode_purge_list(&hex(VECTOR)).unwrap(), vector_entries());
    }

    /// flate2's miniz_oxide backend picks a dynamic Huffman block where zlib (which produced
    /// the doc's vector) picks a fixed one, so the deflate bytes differ; header, zlib header
    /// (`78 9c`, default level) and content are the same.
    #[test]
    fn protocol_doc_vector_content_is_reproduced() {
        let encoded = encode_purge_list(&vector_entries());
        assert_eq!(&encoded[..6], &hex(VECTOR)[..6]);
        assert_eq!(decode_purge_list(&encoded).unwrap(), vector_entries());
    }

    #[test]
    fn empty_list_matches_the_protocol_doc() {
        let vector = hex("00 00 00 00 78 9c 03 00 00 00 00 01");
        assert_eq!(encode_purge_list(&[]), vector);
        assert!(decode_purge_list(&vector).unwrap().is_empty());
    }

    #[test]
    fn bare_zero_header_is_an_empty_list() {
        assert!(decode_purge_list(&[0, 0, 0, 0]).unwrap().is_empty());
    }

    #[test]
    fn header_value_is_not_checked() {
        let mut payload = hex(VECTOR);
        payload[..4].copy_from_slice(&0x46_u32.to_le_bytes());
        assert_eq!(decode_purge_list(&payload).unwrap(), vector_entries());
    }

    #[test]
    fn long_list_round_trips() {
        let entries: Vec<String> = (0..500)
            .map(|i| format!("org.example.Iface{}/sensor/{i}/value", i % 7))
            .collect();
        let encoded = encode_purge_list(&entries);
        assert_eq!(
            &encoded[..4],
            &(entries.join(";").len() as u32).to_be_bytes()
        );
        assert_eq!(decode_purge_list(&encoded).unwrap(), entries);
    }

    #[test]
    fn empty_entries_are_dropped() {
        let payload = zlib_with_header(b"a/b;;c/d;");
        assert_eq!(decode_purge_list(&payload).unwrap(), ["a/b", "c/d"]);
    }

    #[test]
    fn payload_shorter_than_the_header_is_an_error() {
        for len in 0..HEADER_LEN {
            let err = decode_purge_list(&[0; HEADER_LEN][..len]).unwrap_err();
            assert!(matches!(err, PurgeError::MissingHeader { .. }), "{err:?}");
        }
    }

    #[test]
    fn every_truncation_of_the_zlib_stream_is_an_error() {
        let payload = hex(VECTOR);
        for len in HEADER_LEN + 1..payload.len() {
            let err = decode_purge_list(&payload[..len]).unwrap_err();
            assert!(
                matches!(err, PurgeError::Inflate(_)),
                "prefix {len}: {err:?}"
            );
        }
    }

    #[test]
    fn garbage_after_the_header_is_an_error() {
        let err = decode_purge_list(b"\0\0\0\x05hello").unwrap_err();
        assert!(matches!(err, PurgeError::Inflate(_)), "{err:?}");
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let err = decode_purge_list(&zlib_with_header(b"a/\xff")).unwrap_err();
        assert!(matches!(err, PurgeError::NotUtf8(_)), "{err:?}");
    }

    #[test]
    fn list_at_the_inflation_cap_is_accepted() {
        let text = vec![b'a'; MAX_INFLATED_LEN];
        let entries = decode_purge_list(&zlib_with_header(&text)).unwrap();
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn zip_bomb_past_the_inflation_cap_is_refused() {
        // ~10 KiB that would inflate to 64 MiB: the decoder stops one byte past the cap.
        let bomb = zlib_with_header(&vec![b';'; 64 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        let err = decode_purge_list(&bomb).unwrap_err();
        assert!(matches!(err, PurgeError::TooLarge { .. }), "{err:?}");
    }
}
