//! The on-disk form of a TPM object: its public area and its private area (encrypted by the
//! TPM under its parent, the storage primary key; useless without that TPM).
//!
//! Layout (all lengths big-endian `u16`):
//!
//! ```text
//! "ATPM" | version (1) | kind ('K' device key, 'S' sealed secret)
//! | len | TPMT_PUBLIC (TPM marshalling) | len | TPM2B_PRIVATE buffer
//! ```
//!
//! Nothing may follow. Decoding checks the layout, that the public area re-marshals to the
//! same bytes, and that it has the attributes this backend gives to objects of that kind, so a
//! file of the wrong kind or a damaged one never reaches the TPM.

use super::esys;

const MAGIC: &[u8; 4] = b"ATPM";
const VERSION: u8 = 1;

/// Which object a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// The device key: ECC P-256, ECDSA-SHA256, signing only.
    Key,
    /// The sealed credentials secret (a keyed-hash data object).
    Sealed,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Key => b'K',
            Kind::Sealed => b'S',
        }
    }
}

/// The largest private area a TPM2B_PRIVATE holds.
const MAX_PRIVATE: usize = 1550;

/// A TPM object as stored: loadable under the storage primary key of the TPM that made it.
#[derive(Debug, Clone)]
pub(super) struct Blob {
    /// The TPMT_PUBLIC, in canonical TPM marshalling.
    pub(super) public: Vec<u8>,
    /// The contents of the TPM2B_PRIVATE (encrypted by the TPM).
    pub(super) private: Vec<u8>,
}

/// Why a file is not a usable blob (for the error's `reason`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum BlobError {
    #[error("not a TPM object file of astarte-agent")]
    Magic,
    #[error("format version {0} is not supported")]
    Version(u8),
    #[error("holds a {found} where a {expected} is expected")]
    Kind {
        found: &'static str,
        expected: &'static str,
    },
    #[error("truncated")]
    Truncated,
    #[error("{0} bytes of trailing data")]
    Trailing(usize),
    #[error("the public area is malformed")]
    Public,
    #[error("the private area is malformed")]
    Private,
    #[error("the public area is not that of a {0}")]
    Attributes(&'static str),
}

impl Blob {
    pub(super) fn encode(&self, kind: Kind) -> Result<Vec<u8>, BlobError> {
        let (public, private) = (&self.public, &self.private);
        let mut out = Vec::with_capacity(6 + 4 + public.len() + private.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(kind.tag());
        for field in [public, private] {
            let len = u16::try_from(field.len()).map_err(|_| BlobError::Public)?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
        Ok(out)
    }

    /// Parses a blob of `kind`, checked as described in the module documentation.
    pub(super) fn decode(bytes: &[u8], kind: Kind) -> Result<Blob, BlobError> {
        let mut reader = Reader(bytes);
        if reader.take(MAGIC.len())? != MAGIC {
            return Err(BlobError::Magic);
        }
        let version = reader.byte()?;
        if version != VERSION {
            return Err(BlobError::Version(version));
        }
        let tag = reader.byte()?;
        if tag != kind.tag() {
            let name = |tag| match tag {
                b'K' => "device key",
                b'S' => "sealed secret",
                _ => "unknown object",
            };
            return Err(BlobError::Kind {
                found: name(tag),
                expected: name(kind.tag()),
            });
        }
        let public_bytes = reader.field()?;
        let private_bytes = reader.field()?;
        if !reader.0.is_empty() {
            return Err(BlobError::Trailing(reader.0.len()));
        }

        let (public, _) = esys::unmarshal_public(public_bytes).map_err(|_| BlobError::Public)?;
        // The unmarshaller ignores trailing bytes; a round trip catches them (and any other
        // non-canonical encoding).
        if esys::marshal_public(&public).map_err(|_| BlobError::Public)? != public_bytes {
            return Err(BlobError::Public);
        }
        if !super::commands::matches_template(public_bytes, kind) {
            return Err(BlobError::Attributes(match kind {
                Kind::Key => "device key",
                Kind::Sealed => "sealed secret",
            }));
        }
        if private_bytes.is_empty() || private_bytes.len() > MAX_PRIVATE {
            return Err(BlobError::Private);
        }
        let (public, private) = (public_bytes.to_vec(), private_bytes.to_vec());
        Ok(Blob { public, private })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], BlobError> {
        if self.0.len() < len {
            return Err(BlobError::Truncated);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, BlobError> {
        Ok(self.take(1)?[0])
    }

    fn field(&mut self) -> Result<&'a [u8], BlobError> {
        let len = self.take(2)?;
        let len = u16::from_be_bytes([len[0], len[1]]);
        self.take(usize::from(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::tpm::commands::template;

    fn blob(kind: Kind) -> Blob {
        Blob {
            public: template(kind).to_vec(),
            private: vec![0xab; 48],
        }
    }

    #[test]
    fn blobs_round_trip_and_refuse_the_other_kind() {
        for (kind, other) in [(Kind::Key, Kind::Sealed), (Kind::Sealed, Kind::Key)] {
            let bytes = blob(kind).encode(kind).unwrap();
            let decoded = Blob::decode(&bytes, kind).unwrap();
            assert_eq!(decoded.encode(kind).unwrap(), bytes);
            assert!(matches!(
                Blob::decode(&bytes, other),
                Err(BlobError::Kind { .. })
            ));
        }
    }

    /// Fuzzing of the file format: truncated, bit-flipped, grown or spliced blobs decode to a
    /// blob that re-encodes to the same bytes, or are refused with a reason; never a panic.
    #[test]
    fn mutated_blobs_are_refused_or_decode_exactly() {
        // Fixed: every run checks the same cases (change it to explore others).
        let seed = 0xb10b_5eed;
        let mut rng = fastrand::Rng::with_seed(seed);
        let valid = [Kind::Key, Kind::Sealed].map(|kind| (kind, blob(kind).encode(kind).unwrap()));
        for case in 0..3000 {
            let (kind, ref original) = valid[case % 2];
            let mut bytes = original.clone();
            for _ in 0..rng.usize(1..4) {
                let len = bytes.len();
                match rng.u8(0..5) {
                    0 => bytes.truncate(rng.usize(0..=len)),
                    1 if len > 0 => bytes[rng.usize(0..len)] ^= 1 << rng.u8(0..8),
                    2 if len > 0 => bytes[rng.usize(0..len)] = rng.u8(..),
                    3 => bytes.insert(rng.usize(0..=len), rng.u8(..)),
                    _ => bytes.extend_from_within(rng.usize(0..=len)..),
                }
            }
            match Blob::decode(&bytes, kind) {
                Ok(decoded) => assert_eq!(
                    decoded.encode(kind).unwrap(),
                    bytes,
                    "seed {seed}, case {case}"
                ),
                Err(error) => assert!(!error.to_string().is_empty(), "seed {seed}, case {case}"),
            }
        }
    }
}
