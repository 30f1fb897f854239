//! The test CA's certificates for unit tests: explicit validity windows and server names.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use astarte_sandbox::{TestCa, Verification};
use openssl::asn1::Asn1Time;
use openssl::x509::X509;
use support::{csr, new_key, subject_cn};

const HOUR: Duration = Duration::from_secs(3600);

fn at(unix: i64) -> Asn1Time {
    Asn1Time::from_unix(unix).unwrap()
}

/// Whether the certificate's validity is exactly from `not_before` to `not_after`.
fn valid_between(pem: &str, not_before: i64, not_after: i64) -> bool {
    let cert = X509::from_pem(pem.as_bytes()).unwrap();
    cert.not_before() == at(not_before) && cert.not_after() == at(not_after)
}

fn unix(time: SystemTime) -> i64 {
    i64::try_from(time.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

#[test]
fn a_csr_signed_between_two_instants_is_valid_exactly_then() {
    let ca = TestCa::generate("ca").unwrap();
    let now = SystemTime::now();
    let (from, to) = (now - 2 * HOUR, now - HOUR);
    let pem = ca
        .sign_csr_between(&csr(&new_key(), "x"), "test/dev", from, to)
        .unwrap();
    assert_eq!(subject_cn(&pem), "test/dev");
    assert!(valid_between(&pem, unix(from), unix(to)));
    assert_eq!(ca.verify(&pem), Verification::Invalid { cause: "EXPIRED" });

    let fresh = ca
        .sign_csr_between(&csr(&new_key(), "x"), "test/dev", now - HOUR, now + HOUR)
        .unwrap();
    assert!(matches!(ca.verify(&fresh), Verification::Valid { .. }));
}

#[test]
fn a_validity_window_may_start_before_1970() {
    let ca = TestCa::generate("ca").unwrap();
    let from = UNIX_EPOCH - Duration::from_secs(86_405);
    let to = UNIX_EPOCH + Duration::from_secs(5);
    let pem = ca
        .sign_csr_between(&csr(&new_key(), "x"), "test/dev", from, to)
        .unwrap();
    assert!(valid_between(&pem, -86_405, 5));
}

#[test]
fn signing_between_refuses_an_invalid_csr() {
    let ca = TestCa::generate("ca").unwrap();
    let now = SystemTime::now();
    let err = ca.sign_csr_between("nope", "t/d", now, now + HOUR);
    assert!(matches!(err, Err(astarte_sandbox::CaError::InvalidCsr)));
}

#[test]
fn a_server_certificate_for_a_name_is_for_that_name_only() {
    let ca = TestCa::generate("ca").unwrap();
    let identity = ca.issue_server_for("pairing.test").unwrap();
    let cert = X509::from_pem(identity.cert_pem.as_bytes()).unwrap();
    let names: Vec<String> = cert
        .subject_alt_names()
        .unwrap()
        .iter()
        .map(|name| match (name.dnsname(), name.ipaddress()) {
            (Some(dns), _) => dns.to_owned(),
            (None, Some(ip)) => format!("{ip:?}"),
            (None, None) => "other".to_owned(),
        })
        .collect();
    assert_eq!(names, ["pairing.test"]);
    assert_eq!(subject_cn(&identity.cert_pem), "pairing.test");
    let issuer = X509::from_pem(ca.cert_pem().unwrap().as_bytes()).unwrap();
    assert!(cert.verify(&issuer.public_key().unwrap()).unwrap());
}
