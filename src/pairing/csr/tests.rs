use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::X509Req;

use super::*;
use crate::pairing::test_support::TestCa;

const CN: &str = "test/2TBn-jNESuuHamE2Zo1anA";

fn whole_seconds(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(time.duration_since(UNIX_EPOCH).unwrap().as_secs())
}

#[test]
fn the_csr_is_signed_by_a_p256_key_with_sha256_and_names_only_the_cn() {
    let (key, csr_pem) = generate_key_and_csr(CN).unwrap();
    let csr = X509Req::from_pem(csr_pem.as_bytes()).unwrap();
    let public = csr.public_key().unwrap();
    assert!(csr.verify(&public).unwrap());
    let ec = public.ec_key().unwrap();
    assert_eq!(ec.group().curve_name(), Some(Nid::X9_62_PRIME256V1));
    let text = String::from_utf8(csr.to_text().unwrap()).unwrap();
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    let names: Vec<_> = csr
        .subject_name()
        .entries()
        .map(|e| (e.object().nid(), e.data().to_string().unwrap()))
        .collect();
    assert_eq!(names, vec![(Nid::COMMONNAME, CN.to_owned())]);
    let private = PKey::private_key_from_pem(key.expose().as_bytes()).unwrap();
    assert!(public.public_eq(&private));
    assert!(key.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn a_cn_longer_than_64_characters_is_accepted() {
    let cn = format!("{}/2TBn-jNESuuHamE2Zo1anA", "r".repeat(48));
    let (_, csr_pem) = generate_key_and_csr(&cn).unwrap();
    let csr = X509Req::from_pem(csr_pem.as_bytes()).unwrap();
    let entry = csr.subject_name().entries().next().unwrap();
    assert_eq!(entry.data().to_string().unwrap(), cn);
}

#[test]
fn inspect_reads_the_cn_and_validity_of_a_matching_certificate() {
    let ca = TestCa::new("ca");
    let (key, csr) = generate_key_and_csr("ignored").unwrap();
    let not_before = whole_seconds(SystemTime::now() - Duration::from_secs(60));
    let not_after = not_before + Duration::from_secs(90 * 86_400);
    let cert = ca.sign_csr(&csr, CN, not_before, not_after);
    let info = inspect_certificate(&cert, &key).unwrap();
    assert_eq!(
        info,
        CertificateInfo {
            common_name: CN.into(),
            not_before,
            not_after
        }
    );
}

#[test]
fn validity_before_1970_is_represented() {
    let ca = TestCa::new("ca");
    let (key, csr) = generate_key_and_csr(CN).unwrap();
    let not_before = UNIX_EPOCH - Duration::from_secs(86_400 + 5);
    let cert = ca.sign_csr(&csr, CN, not_before, UNIX_EPOCH + Duration::from_secs(5));
    assert_eq!(
        inspect_certificate(&cert, &key).unwrap().not_before,
        not_before
    );
}

#[test]
fn a_certificate_for_another_key_is_a_mismatch() {
    let ca = TestCa::new("ca");
    let (_, csr) = generate_key_and_csr(CN).unwrap();
    let (other_key, _) = generate_key_and_csr(CN).unwrap();
    let now = SystemTime::now();
    let cert = ca.sign_csr(&csr, CN, now, now + Duration::from_secs(3600));
    let err = inspect_certificate(&cert, &other_key).unwrap_err();
    assert!(matches!(err, CsrError::KeyMismatch), "{err:?}");
}

#[test]
fn a_pem_with_two_certificates_is_refused() {
    let ca = TestCa::new("ca");
    let (key, csr) = generate_key_and_csr(CN).unwrap();
    let now = SystemTime::now();
    let cert = ca.sign_csr(&csr, CN, now, now + Duration::from_secs(3600));
    let err = inspect_certificate(&format!("{cert}{}", ca.cert_pem()), &key).unwrap_err();
    assert!(
        matches!(err, CsrError::CertificateCount { count: 2 }),
        "{err:?}"
    );
}

#[test]
fn garbage_is_not_a_certificate() {
    let (key, _) = generate_key_and_csr(CN).unwrap();
    let err = inspect_certificate("not a certificate", &key).unwrap_err();
    assert!(
        matches!(
            err,
            CsrError::CertificateCount { count: 0 } | CsrError::ParseCertificate { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn a_garbage_key_is_a_key_error() {
    let ca = TestCa::new("ca");
    let (_, csr) = generate_key_and_csr(CN).unwrap();
    let now = SystemTime::now();
    let cert = ca.sign_csr(&csr, CN, now, now + Duration::from_secs(3600));
    let err = inspect_certificate(&cert, &Secret::new("garbage")).unwrap_err();
    assert!(matches!(err, CsrError::ParseKey { .. }), "{err:?}");
}
