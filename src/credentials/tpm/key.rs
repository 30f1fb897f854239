//! The device key as the rest of the agent sees it: a public point and a `sign` that asks the
//! TPM.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::blob::Blob;
use super::commands;
use super::esys::{self, ALG_ECC};
use super::worker::Tpm;
use crate::credentials::{DeviceKey, SignError};
use ring::digest::{SHA256, digest};

/// Coordinates of a P-256 point are 32 bytes.
const COORDINATE_LEN: usize = 32;

/// A device key held by the TPM: its blob (useless elsewhere) and its public point.
pub(super) struct TpmKey {
    path: PathBuf,
    public_key: Vec<u8>,
    blob: Arc<Blob>,
    tpm: Arc<Tpm>,
}

impl TpmKey {
    /// `None` if the blob's public area has no P-256 point.
    pub(super) fn new(path: PathBuf, blob: Blob, tpm: Arc<Tpm>) -> Option<TpmKey> {
        let public_key = sec1_point(&blob.public)?;
        Some(TpmKey {
            path,
            public_key,
            blob: Arc::new(blob),
            tpm,
        })
    }
}

impl fmt::Debug for TpmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TpmKey").field("path", &self.path).finish()
    }
}

impl DeviceKey for TpmKey {
    fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Hashes here, signs in the TPM (a handful of commands: re-create the primary, load,
    /// sign, flush), waits at most the backend's timeout.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        tracing::debug!(key = %self.path.display(), "signing with the device key in the TPM");
        let hash = digest(&SHA256, message);
        let blob = self.blob.clone();
        let (r, s) = self
            .tpm
            .run(move |context| commands::sign(context, &blob, hash.as_ref()))
            .map_err(|failure| SignError {
                reason: failure.to_string(),
            })?;
        ecdsa_der(&r, &s).ok_or_else(|| SignError {
            reason: "the TPM returned a signature with oversized components".into(),
        })
    }
}

/// `04 || x || y` from an ECC public area (TPM marshalling), coordinates left-padded to 32
/// bytes (the TPM may drop leading zeros).
fn sec1_point(public: &[u8]) -> Option<Vec<u8>> {
    let (public, _) = esys::unmarshal_public(public).ok()?;
    if public.type_ != ALG_ECC {
        return None;
    }
    // SAFETY: the type says the ECC member is the one the unmarshaller filled; it is made of
    // integers and byte arrays, valid for any bit pattern anyway.
    let unique = unsafe { &public.unique.ecc };
    let mut point = Vec::with_capacity(1 + 2 * COORDINATE_LEN);
    point.push(0x04);
    for coordinate in [&unique.x, &unique.y] {
        let coordinate = coordinate.buffer.get(..usize::from(coordinate.size))?;
        if coordinate.is_empty() || coordinate.len() > COORDINATE_LEN {
            return None;
        }
        point.resize(point.len() + COORDINATE_LEN - coordinate.len(), 0);
        point.extend_from_slice(coordinate);
    }
    Some(point)
}

/// DER `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` from big-endian unsigned
/// `r` and `s` of at most 32 bytes: minimal INTEGERs (leading zeros dropped, a zero byte
/// added when the high bit is set, so they stay positive). `None` for longer components.
fn ecdsa_der(r: &[u8], s: &[u8]) -> Option<Vec<u8>> {
    let r = der_integer(r)?;
    let s = der_integer(s)?;
    // At most 2 × (2 + 33) = 70 bytes: short-form lengths throughout.
    let len = u8::try_from(r.len() + s.len()).ok()?;
    let mut out = Vec::with_capacity(2 + usize::from(len));
    out.extend_from_slice(&[0x30, len]);
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    Some(out)
}

fn der_integer(value: &[u8]) -> Option<Vec<u8>> {
    let start = value
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(value.len());
    let digits = &value[start..];
    if digits.len() > COORDINATE_LEN {
        return None;
    }
    let pad = digits.first().is_none_or(|&first| first & 0x80 != 0);
    let len = digits.len() + usize::from(pad);
    let mut out = Vec::with_capacity(2 + len);
    out.extend_from_slice(&[0x02, u8::try_from(len).ok()?]);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
    Some(out)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::plain(&[0x12, 0x34], &[0x02, 0x02, 0x12, 0x34])]
    #[case::high_bit_gets_a_zero(&[0x80, 0x01], &[0x02, 0x03, 0x00, 0x80, 0x01])]
    #[case::leading_zeros_dropped(&[0x00, 0x00, 0x7f], &[0x02, 0x01, 0x7f])]
    #[case::leading_zero_then_high_bit(&[0x00, 0xff], &[0x02, 0x02, 0x00, 0xff])]
    #[case::zero(&[0x00, 0x00], &[0x02, 0x01, 0x00])]
    #[case::empty_is_zero(&[], &[0x02, 0x01, 0x00])]
    fn integers_are_minimal_and_positive(#[case] value: &[u8], #[case] der: &[u8]) {
        assert_eq!(der_integer(value).unwrap(), der);
    }

    #[test]
    fn full_size_components_with_high_bits_fit_short_lengths() {
        let der = ecdsa_der(&[0xff; 32], &[0x80; 32]).unwrap();
        assert_eq!(&der[..2], &[0x30, 70]);
        assert_eq!(der.len(), 72);
    }

    #[test]
    fn oversized_components_are_refused() {
        assert!(ecdsa_der(&[1; 33], &[1]).is_none());
        // Leading zeros don't count.
        assert!(ecdsa_der(&[[0].as_slice(), &[1; 32]].concat(), &[1]).is_some());
    }
}
