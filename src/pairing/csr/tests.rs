use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::X509Req;

use astarte_sandbox::TestCa;

use super::*;
use crate::credentials::MemoryKey;

/// A fresh in-memory key and a CSR it signed for `cn`.
fn key_and_csr(cn: &str) -> (Arc<MemoryKey>, String) {
    let key = Arc::new(MemoryKey::generate().unwrap());
    let csr = certificate_request(cn, key.clone()).unwrap();
    (key, csr)
}

const CN: &str = "test/2TBn-jNESuuHamE2Zo1anA";

fn whole_seconds(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(time.duration_since(UNIX_EPOCH).unwrap().as_secs())
}

#[test]
fn the_csr_is_signed_by_a_p256_key_with_sha256_and_names_only_the_cn() {
    let (key, csr_pem) = key_and_csr(CN);
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
    let private = PKey::private_key_from_pem(key.to_pem().expose().as_bytes()).unwrap();
    assert!(public.public_eq(&private));
}

#[test]
fn a_cn_longer_than_64_characters_is_accepted() {
    let cn = format!("{}/2TBn-jNESuuHamE2Zo1anA", "r".repeat(48));
    let (_, csr_pem) = key_and_csr(&cn);
    let csr = X509Req::from_pem(csr_pem.as_bytes()).unwrap();
    let entry = csr.subject_name().entries().next().unwrap();
    assert_eq!(entry.data().to_string().unwrap(), cn);
}

#[test]
fn inspect_reads_the_cn_and_validity_of_a_matching_certificate() {
    let ca = TestCa::generate("ca").unwrap();
    let (key, csr) = key_and_csr("ignored");
    let not_before = whole_seconds(SystemTime::now() - Duration::from_secs(60));
    let not_after = not_before + Duration::from_secs(90 * 86_400);
    let cert = ca
        .sign_csr_between(&csr, CN, not_before, not_after)
        .unwrap();
    let info = inspect_certificate(&cert, key.public_key()).unwrap();
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
    let ca = TestCa::generate("ca").unwrap();
    let (key, csr) = key_and_csr(CN);
    let not_before = UNIX_EPOCH - Duration::from_secs(86_400 + 5);
    let cert = ca
        .sign_csr_between(&csr, CN, not_before, UNIX_EPOCH + Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        inspect_certificate(&cert, key.public_key())
            .unwrap()
            .not_before,
        not_before
    );
}

#[test]
fn a_certificate_for_another_key_is_a_mismatch() {
    let ca = TestCa::generate("ca").unwrap();
    let (_, csr) = key_and_csr(CN);
    let (other_key, _) = key_and_csr(CN);
    let now = SystemTime::now();
    let cert = ca
        .sign_csr_between(&csr, CN, now, now + Duration::from_secs(3600))
        .unwrap();
    let err = inspect_certificate(&cert, other_key.public_key()).unwrap_err();
    assert!(matches!(err, CsrError::KeyMismatch), "{err:?}");
}

#[test]
fn a_pem_with_two_certificates_is_refused() {
    let ca = TestCa::generate("ca").unwrap();
    let (key, csr) = key_and_csr(CN);
    let now = SystemTime::now();
    let cert = ca
        .sign_csr_between(&csr, CN, now, now + Duration::from_secs(3600))
        .unwrap();
    let err = inspect_certificate(
        &format!("{cert}{}", ca.cert_pem().unwrap()),
        key.public_key(),
    )
    .unwrap_err();
    assert!(
        matches!(err, CsrError::CertificateCount { count: 2 }),
        "{err:?}"
    );
}

#[test]
fn garbage_is_not_a_certificate() {
    let (key, _) = key_and_csr(CN);
    let err = inspect_certificate("not a certificate", key.public_key()).unwrap_err();
    assert!(
        matches!(
            err,
            CsrError::CertificateCount { count: 0 } | CsrError::ParseCertificate { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn a_failing_signer_is_a_generate_error() {
    #[derive(Debug)]
    struct Broken(Vec<u8>);
    impl DeviceKey for Broken {
        fn public_key(&self) -> &[u8] {
            &self.0
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, crate::credentials::SignError> {
            Err(crate::credentials::SignError {
                reason: "TPM gone".into(),
            })
        }
    }
    let (key, _) = key_and_csr(CN);
    let err = certificate_request(CN, Arc::new(Broken(key.public_key().to_vec()))).unwrap_err();
    assert!(matches!(err, CsrError::Generate { .. }), "{err:?}");
}
