//! The three things the agent reads from its certificate (RFC 5280): the subject public key,
//! the subject's first common name and the validity period. A DER reader of a few dozen lines
//! instead of `x509-parser` (over 150 KB of the binary for one function): the certificate is
//! checked in full by rustls when it is used, this only has to find these fields.

use std::fmt;

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const NUMERIC_STRING: u8 = 0x12;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VISIBLE_STRING: u8 = 0x1a;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
/// `[0] EXPLICIT`: the version of a TBSCertificate.
const VERSION: u8 = 0xa0;
/// 2.5.4.3, `id-at-commonName`.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// A malformed certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed(&'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed certificate: {}", self.0)
    }
}

/// The fields of a certificate the agent uses.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Certificate<'a> {
    /// The subject public key's bits (for EC keys, the SEC1 point).
    pub(super) public_key: &'a [u8],
    /// The first common name of the subject, if it is a string.
    pub(super) common_name: Option<&'a str>,
    /// Seconds since the Unix epoch.
    pub(super) not_before: i64,
    pub(super) not_after: i64,
}

impl<'a> Certificate<'a> {
    pub(super) fn from_der(der: &'a [u8]) -> Result<Certificate<'a>, Malformed> {
        let mut outer = Reader(der);
        let mut certificate = Reader(outer.take(SEQUENCE)?);
        outer.end()?;
        let mut tbs = Reader(certificate.take(SEQUENCE)?);
        certificate.take(SEQUENCE)?; // signatureAlgorithm
        certificate.take(BIT_STRING)?; // signatureValue
        certificate.end()?;

        if tbs.peek() == Some(VERSION) {
            tbs.take(VERSION)?;
        }
        tbs.take(INTEGER)?; // serialNumber
        tbs.take(SEQUENCE)?; // signature
        tbs.take(SEQUENCE)?; // issuer
        let mut validity = Reader(tbs.take(SEQUENCE)?);
        let not_before = validity.time()?;
        let not_after = validity.time()?;
        validity.end()?;
        let subject = tbs.take(SEQUENCE)?;
        let mut spki = Reader(tbs.take(SEQUENCE)?);
        spki.take(SEQUENCE)?; // algorithm
        let public_key = match spki.take(BIT_STRING)? {
            [0, bits @ ..] => bits,
            _ => return Err(Malformed("subject public key with unused bits")),
        };
        spki.end()?;
        // issuerUniqueID, subjectUniqueID and extensions may follow: not needed.
        Ok(Certificate {
            public_key,
            common_name: common_name(subject)?,
            not_before,
            not_after,
        })
    }
}

/// The value of the first common name in `name` (an RDNSequence), if it is a string.
fn common_name(name: &[u8]) -> Result<Option<&str>, Malformed> {
    let mut rdns = Reader(name);
    while !rdns.0.is_empty() {
        let mut rdn = Reader(rdns.take(SET)?);
        while !rdn.0.is_empty() {
            let mut attribute = Reader(rdn.take(SEQUENCE)?);
            if attribute.take(OID)? != COMMON_NAME {
                continue;
            }
            let (tag, value) = attribute.any()?;
            return Ok(match tag {
                UTF8_STRING | NUMERIC_STRING | PRINTABLE_STRING | IA5_STRING | VISIBLE_STRING => {
                    std::str::from_utf8(value).ok()
                }
                _ => None,
            });
        }
    }
    Ok(None)
}

/// A DER reader over the contents of one constructed value.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The next value, whatever its tag: (tag, contents).
    fn any(&mut self) -> Result<(u8, &'a [u8]), Malformed> {
        let [tag, first, rest @ ..] = self.0 else {
            return Err(Malformed("truncated"));
        };
        let (len, rest) = match *first {
            len @ 0..=0x7f => (usize::from(len), rest),
            // Long form, at most 4 length bytes, minimal (DER).
            0x81..=0x84 => {
                let count = usize::from(first & 0x7f);
                let bytes = rest.get(..count).ok_or(Malformed("truncated"))?;
                let len = bytes
                    .iter()
                    .fold(0usize, |len, &b| len << 8 | usize::from(b));
                if bytes[0] == 0 || len < 0x80 {
                    return Err(Malformed("non-minimal length"));
                }
                (len, &rest[count..])
            }
            _ => return Err(Malformed("unsupported length")),
        };
        let contents = rest.get(..len).ok_or(Malformed("truncated"))?;
        self.0 = &rest[len..];
        Ok((*tag, contents))
    }

    /// The contents of the next value, which must have `tag`.
    fn take(&mut self, tag: u8) -> Result<&'a [u8], Malformed> {
        match self.any()? {
            (found, contents) if found == tag => Ok(contents),
            _ => Err(Malformed("unexpected field")),
        }
    }

    fn end(&self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed("trailing data"))
        }
    }

    /// A `Time` (UTCTime or GeneralizedTime, UTC, whole seconds) as seconds since the epoch.
    fn time(&mut self) -> Result<i64, Malformed> {
        let bad = Malformed("invalid time");
        let (tag, value) = self.any()?;
        let (year, rest) = match (tag, value) {
            (UTC_TIME, [y @ .., b'Z']) if y.len() == 12 => {
                let year = digits(&y[..2]).ok_or(bad)?;
                (if year >= 50 { 1900 } else { 2000 } + year, &y[2..])
            }
            (GENERALIZED_TIME, [y @ .., b'Z']) if y.len() == 14 => {
                (digits(&y[..4]).ok_or(bad)?, &y[4..])
            }
            _ => return Err(bad),
        };
        let field = |i: usize| digits(&rest[i..i + 2]).ok_or(Malformed("invalid time"));
        let (month, day) = (field(0)?, field(2)?);
        let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let month_days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            1..=12 => 31,
            _ => return Err(bad),
        };
        if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
            return Err(bad);
        }
        Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
    }
}

/// Decimal digits as a number.
fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
    })
}

/// Days from 1970-01-01 to `year-month-day` (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    use super::*;

    #[rstest]
    #[case(1970, 1, 1, 0)]
    #[case(1969, 12, 31, -1)]
    #[case(2000, 3, 1, 11_017)]
    #[case(2024, 2, 29, 19_782)]
    #[case(2049, 12, 31, 29_219)]
    fn civil_dates_count_days_from_the_epoch(
        #[case] year: i64,
        #[case] month: i64,
        #[case] day: i64,
        #[case] days: i64,
    ) {
        assert_eq!(days_from_civil(year, month, day), days);
    }

    #[rstest]
    #[case(UTC_TIME, "700101000000Z", 0)]
    #[case(UTC_TIME, "491231235959Z", 2_524_607_999)]
    #[case(UTC_TIME, "500101000000Z", -631_152_000)]
    #[case(GENERALIZED_TIME, "20500101000000Z", 2_524_608_000)]
    #[case(GENERALIZED_TIME, "19691231235955Z", -5)]
    fn times_are_seconds_from_the_epoch(#[case] tag: u8, #[case] text: &str, #[case] secs: i64) {
        let mut der = vec![tag, u8::try_from(text.len()).unwrap()];
        der.extend_from_slice(text.as_bytes());
        assert_eq!(Reader(&der).time(), Ok(secs));
    }

    #[rstest]
    #[case(UTC_TIME, "7001010000Z")]
    #[case(UTC_TIME, "700101000000+0100")]
    #[case(UTC_TIME, "701301000000Z")]
    #[case(UTC_TIME, "230229000000Z")]
    #[case(UTC_TIME, "700101000060Z")]
    #[case(GENERALIZED_TIME, "20500101000000.5Z")]
    #[case(INTEGER, "700101000000Z")]
    fn other_times_are_refused(#[case] tag: u8, #[case] text: &str) {
        let mut der = vec![tag, u8::try_from(text.len()).unwrap()];
        der.extend_from_slice(text.as_bytes());
        assert!(Reader(&der).time().is_err());
    }

    #[test]
    fn lengths_must_be_der() {
        assert_eq!(
            Reader(&[0x04, 0x81, 0x01, 0xaa]).any(),
            Err(Malformed("non-minimal length"))
        );
        assert_eq!(
            Reader(&[0x04, 0x80]).any(),
            Err(Malformed("unsupported length"))
        );
        assert_eq!(
            Reader(&[0x04, 0x02, 0xaa]).any(),
            Err(Malformed("truncated"))
        );
        let long = [&[0x04, 0x81, 0x80][..], &[0; 0x80]].concat();
        assert_eq!(Reader(&long).any().unwrap().1.len(), 0x80);
    }

    #[test]
    fn every_prefix_of_a_certificate_is_refused() {
        let ca = astarte_sandbox::TestCa::generate("ca").unwrap();
        let pem = ca.cert_pem().unwrap();
        let der = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let certificate = Certificate::from_der(&der).unwrap();
        assert_eq!(certificate.common_name, Some("ca"));
        for len in 0..der.len() {
            assert!(Certificate::from_der(&der[..len]).is_err(), "{len} bytes");
        }
    }
}
