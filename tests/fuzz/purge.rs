//! The zlib purge list of `control/consumer/properties`: `encode_purge_list` then
//! `decode_purge_list` is the identity; bad zlib, broken or huge length prefixes, non-UTF-8
//! text and truncations are refused with a typed `PurgeError`, never by allocating what the
//! header claims.

use std::io::Write;

use astarte_agent::data::{PurgeError, decode_purge_list, encode_purge_list};
use fastrand::Rng;
use flate2::{Compression, write::ZlibEncoder};

use crate::{driver, mutate};

fn assert_typed(error: &PurgeError) {
    match error {
        PurgeError::MissingHeader { .. }
        | PurgeError::Inflate(_)
        | PurgeError::TooLarge { .. }
        | PurgeError::NotUtf8(_) => driver::assert_message(error),
    }
}

/// Entries as the server sends them: `interface/path`, never empty, never holding `;`.
fn entries(rng: &mut Rng) -> Vec<String> {
    (0..rng.usize(0..40))
        .map(|_| {
            let mut entry = format!("org.example.I{}/p/{}", rng.u8(..), rng.u32(..));
            if rng.bool() {
                entry.push_str(&crate::values::string(rng).replace(';', ""));
            }
            entry
        })
        .collect()
}

fn zlib(header: [u8; 4], text: &[u8]) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(header.to_vec(), Compression::default());
    encoder.write_all(text).expect("zlib into a Vec");
    encoder.finish().expect("zlib into a Vec")
}

fn round_trip(rng: &mut Rng) {
    let entries = entries(rng);
    let decoded = decode_purge_list(&encode_purge_list(&entries)).expect("our encoding decodes");
    assert_eq!(decoded, entries);
}

fn mutated(rng: &mut Rng) {
    let entries = entries(rng);
    let mut payload = match rng.u8(0..4) {
        // The header claims far more than follows: it is not trusted, so nothing is reserved.
        0 => zlib([0xff; 4], entries.join(";").as_bytes()),
        // Not UTF-8 inside a good zlib stream.
        1 => {
            let mut text = entries.join(";").into_bytes();
            let at = rng.usize(0..=text.len());
            text.insert(at, [0xff, 0xc0, 0x80][rng.usize(0..3)]);
            zlib([0; 4], &text)
        }
        _ => encode_purge_list(&entries),
    };
    if rng.u8(0..4) > 0 {
        mutate::bytes(rng, &mut payload);
    }
    match decode_purge_list(&payload) {
        Ok(decoded) => assert!(decoded.iter().all(|e| !e.is_empty() && !e.contains(';'))),
        Err(error) => assert_typed(&error),
    }
}

#[test]
fn purge_list() {
    driver::run("purge_list", 3000, |rng| {
        if rng.u8(0..3) == 0 {
            round_trip(rng)
        } else {
            mutated(rng)
        }
    });
}
