//! The test certificate authority: it signs the broker certificate, the observer certificate and
//! the device certificates Pairing issues, like CFSSL does behind a real Astarte.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Time, Asn1TimeRef};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Name, X509NameBuilder, X509Req, X509VerifyResult};

/// CFSSL's default backdate of a certificate's `notBefore`.
pub const DEFAULT_BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Lifetime of the CA, broker and observer certificates: they must outlive any test or demo.
const INFRASTRUCTURE_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("couldn't {what}")]
    Openssl {
        what: &'static str,
        #[source]
        source: ErrorStack,
    },
    #[error("the certificate request is not a valid PEM CSR")]
    InvalidCsr,
    #[error("openssl wrote a PEM that is not text")]
    NonAsciiPem,
}

fn ctx(what: &'static str) -> impl FnOnce(ErrorStack) -> CaError {
    move |source| CaError::Openssl { what, source }
}

/// A certificate and its private key, both PEM (the key as PKCS#8).
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// What verifying a client certificate against the CA found, with Astarte's cause names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    Valid { until_unix: i64 },
    Invalid { cause: &'static str },
}

/// A self-signed EC P-256 CA.
pub struct TestCa {
    cert: X509,
    key: PKey<Private>,
}

impl TestCa {
    /// Generates a fresh CA named `CN=<name>`.
    pub fn generate(name: &str) -> Result<Self, CaError> {
        let key = new_key()?;
        let subject = common_name(name)?;
        let now = unix_now();
        let mut b = cert_builder(&subject, &subject, &key, now, INFRASTRUCTURE_VALIDITY)?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None));
        let exts = [
            BasicConstraints::new().critical().ca().build(),
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build(),
            ski,
        ];
        for ext in exts {
            b.append_extension(ext.map_err(ctx("build the CA extensions"))?)
                .map_err(ctx("add a CA extension"))?;
        }
        b.sign(&key, MessageDigest::sha256())
            .map_err(ctx("self-sign the CA"))?;
        Ok(Self {
            cert: b.build(),
            key,
        })
    }

    pub fn cert_pem(&self) -> Result<String, CaError> {
        pem_string(
            self.cert
                .to_pem()
                .map_err(ctx("encode the CA certificate"))?,
        )
    }

    /// A TLS server certificate for `localhost` / `127.0.0.1`.
    pub fn issue_server(&self) -> Result<Identity, CaError> {
        self.server_identity("localhost", |san| san.dns("localhost").ip("127.0.0.1"))
    }

    /// A TLS server certificate for the DNS name `dns` only (e.g. a Pairing host a client
    /// must trust, or must refuse under another name).
    pub fn issue_server_for(&self, dns: &str) -> Result<Identity, CaError> {
        self.server_identity(dns, |san| san.dns(dns))
    }

    fn server_identity(
        &self,
        cn: &str,
        names: impl FnOnce(&mut SubjectAlternativeName) -> &mut SubjectAlternativeName,
    ) -> Result<Identity, CaError> {
        let key = new_key()?;
        let subject = common_name(cn)?;
        let mut b = cert_builder(
            &subject,
            self.cert.subject_name(),
            &key,
            unix_now(),
            INFRASTRUCTURE_VALIDITY,
        )?;
        let san = names(&mut SubjectAlternativeName::new())
            .build(&b.x509v3_context(Some(&self.cert), None))
            .map_err(ctx("build the server SAN"))?;
        b.append_extension(san).map_err(ctx("add the server SAN"))?;
        let eku = ExtendedKeyUsage::new().server_auth().build();
        identity(self.finish(b, eku)?, &key)
    }

    /// A TLS client certificate with subject `CN=<cn>`, valid from now for `validity`.
    pub fn issue_client(&self, cn: &str, validity: Duration) -> Result<Identity, CaError> {
        let key = new_key()?;
        let subject = common_name(cn)?;
        let b = cert_builder(
            &subject,
            self.cert.subject_name(),
            &key,
            unix_now(),
            validity,
        )?;
        let eku = ExtendedKeyUsage::new().client_auth().build();
        identity(self.finish(b, eku)?, &key)
    }

    /// Signs a PEM CSR as Astarte's Pairing does: the subject is forced to `CN=<cn>` whatever the
    /// CSR says. `notBefore` is backdated like CFSSL; `notAfter` counts from now (CFSSL counts it
    /// from the backdated start, which would make very short test validities already expired).
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        cn: &str,
        validity: Duration,
        backdate: Duration,
    ) -> Result<String, CaError> {
        let now = unix_now();
        let not_after = now.saturating_add(secs(validity));
        self.sign_csr_window(csr_pem, cn, now.saturating_sub(secs(backdate)), not_after)
    }

    /// Signs a PEM CSR like [`TestCa::sign_csr`], valid from `not_before` to `not_after`
    /// exactly (to the second, sub-seconds dropped): either may be in the past, even before
    /// 1970, for certificates that are expired, due for renewal or not yet valid.
    pub fn sign_csr_between(
        &self,
        csr_pem: &str,
        cn: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<String, CaError> {
        self.sign_csr_window(csr_pem, cn, unix(not_before), unix(not_after))
    }

    fn sign_csr_window(
        &self,
        csr_pem: &str,
        cn: &str,
        not_before: i64,
        not_after: i64,
    ) -> Result<String, CaError> {
        let public = csr_public_key(csr_pem)?;
        let subject = common_name(cn)?;
        let mut b = cert_builder(
            &subject,
            self.cert.subject_name(),
            &public,
            not_before,
            Duration::ZERO,
        )?;
        let not_after = asn1_time(not_after)?;
        b.set_not_after(&not_after).map_err(ctx("set notAfter"))?;
        let eku = ExtendedKeyUsage::new().client_auth().build();
        self.finish(b, eku)
    }

    /// Path validation of a PEM client certificate against this CA, as Pairing's verify does.
    pub fn verify(&self, cert_pem: &str) -> Verification {
        self.verify_at(cert_pem, unix_now())
    }

    fn verify_at(&self, cert_pem: &str, now: i64) -> Verification {
        let invalid = |cause| Verification::Invalid { cause };
        let Ok(cert) = X509::from_pem(cert_pem.as_bytes()) else {
            return invalid("INVALID");
        };
        let (Some(not_before), Some(not_after)) = (
            asn1_to_unix(cert.not_before()),
            asn1_to_unix(cert.not_after()),
        ) else {
            return invalid("INVALID");
        };
        if now > not_after || now < not_before {
            return invalid("EXPIRED");
        }
        if self.cert.issued(&cert) != X509VerifyResult::OK {
            return invalid("INVALID_ISSUER");
        }
        match self.cert.public_key().and_then(|k| cert.verify(&k)) {
            Ok(true) => Verification::Valid {
                until_unix: not_after,
            },
            _ => invalid("INVALID_SIGNATURE"),
        }
    }

    /// Adds the extensions every leaf gets, then signs.
    fn finish(
        &self,
        mut b: X509Builder,
        eku: Result<openssl::x509::X509Extension, ErrorStack>,
    ) -> Result<String, CaError> {
        let v3 = b.x509v3_context(Some(&self.cert), None);
        let exts = [
            BasicConstraints::new().critical().build(),
            KeyUsage::new().critical().digital_signature().build(),
            eku,
            SubjectKeyIdentifier::new().build(&v3),
            AuthorityKeyIdentifier::new().keyid(false).build(&v3),
        ];
        for ext in exts {
            b.append_extension(ext.map_err(ctx("build a leaf extension"))?)
                .map_err(ctx("add a leaf extension"))?;
        }
        b.sign(&self.key, MessageDigest::sha256())
            .map_err(ctx("sign a leaf certificate"))?;
        pem_string(
            b.build()
                .to_pem()
                .map_err(ctx("encode a leaf certificate"))?,
        )
    }
}

/// The public key of a CSR whose signature checks out.
fn csr_public_key(csr_pem: &str) -> Result<PKey<Public>, CaError> {
    let csr = X509Req::from_pem(csr_pem.as_bytes()).map_err(|_| CaError::InvalidCsr)?;
    let public = csr.public_key().map_err(|_| CaError::InvalidCsr)?;
    if !csr.verify(&public).unwrap_or(false) {
        return Err(CaError::InvalidCsr);
    }
    Ok(public)
}

fn identity(cert_pem: String, key: &PKey<Private>) -> Result<Identity, CaError> {
    let key_pem = key
        .private_key_to_pem_pkcs8()
        .map_err(ctx("encode a private key"))?;
    Ok(Identity {
        cert_pem,
        key_pem: pem_string(key_pem)?,
    })
}

/// Common fields of every certificate the CA makes (itself included); extensions come after.
fn cert_builder<T: openssl::pkey::HasPublic>(
    subject: &openssl::x509::X509NameRef,
    issuer: &openssl::x509::X509NameRef,
    public: &PKey<T>,
    now: i64,
    validity: Duration,
) -> Result<X509Builder, CaError> {
    let mut b = X509Builder::new().map_err(ctx("start a certificate"))?;
    b.set_version(2).map_err(ctx("set the version"))?;
    let serial = random_serial()?;
    b.set_serial_number(&serial)
        .map_err(ctx("set the serial"))?;
    b.set_subject_name(subject)
        .map_err(ctx("set the subject"))?;
    b.set_issuer_name(issuer).map_err(ctx("set the issuer"))?;
    b.set_pubkey(public).map_err(ctx("set the public key"))?;
    let not_before = asn1_time(now)?;
    let not_after = asn1_time(now.saturating_add(secs(validity)))?;
    b.set_not_before(&not_before)
        .map_err(ctx("set notBefore"))?;
    b.set_not_after(&not_after).map_err(ctx("set notAfter"))?;
    Ok(b)
}

fn new_key() -> Result<PKey<Private>, CaError> {
    let group =
        EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(ctx("load the P-256 group"))?;
    let ec = EcKey::generate(&group).map_err(ctx("generate an EC key"))?;
    PKey::from_ec_key(ec).map_err(ctx("wrap an EC key"))
}

fn common_name(cn: &str) -> Result<X509Name, CaError> {
    let mut b = X509NameBuilder::new().map_err(ctx("start a name"))?;
    b.append_entry_by_nid(Nid::COMMONNAME, cn)
        .map_err(ctx("set a common name"))?;
    Ok(b.build())
}

fn random_serial() -> Result<Asn1Integer, CaError> {
    let mut bn = BigNum::new().map_err(ctx("allocate a serial"))?;
    bn.rand(127, MsbOption::ONE, false)
        .map_err(ctx("draw a random serial"))?;
    bn.to_asn1_integer().map_err(ctx("encode a serial"))
}

fn asn1_time(unix: i64) -> Result<Asn1Time, CaError> {
    Asn1Time::from_unix(unix as _).map_err(ctx("encode a time"))
}

/// Seconds since the epoch of an ASN.1 time.
pub(crate) fn asn1_to_unix(t: &Asn1TimeRef) -> Option<i64> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let d = epoch.diff(t).ok()?;
    Some(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whole seconds since the epoch, negative before it.
fn unix(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => secs(after),
        Err(before) => -secs(before.duration()),
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn pem_string(pem: Vec<u8>) -> Result<String, CaError> {
    String::from_utf8(pem).map_err(|_| CaError::NonAsciiPem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_for(cn: &str) -> String {
        let key = new_key().unwrap();
        let mut b = X509Req::builder().unwrap();
        b.set_subject_name(&common_name(cn).unwrap()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        String::from_utf8(b.build().to_pem().unwrap()).unwrap()
    }

    fn subject_cn(pem: &str) -> String {
        let cert = X509::from_pem(pem.as_bytes()).unwrap();
        let entry = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .unwrap();
        entry.data().to_string().unwrap()
    }

    #[test]
    fn signed_csr_gets_the_forced_common_name_and_verifies() {
        let ca = TestCa::generate("test ca").unwrap();
        let day = Duration::from_secs(86_400);
        let pem = ca
            .sign_csr(&csr_for("whatever"), "test/dev", day, DEFAULT_BACKDATE)
            .unwrap();
        assert_eq!(subject_cn(&pem), "test/dev");
        assert!(matches!(ca.verify(&pem), Verification::Valid { .. }));
    }

    #[test]
    fn certificate_of_another_ca_has_an_invalid_issuer() {
        let ca = TestCa::generate("test ca").unwrap();
        let other = TestCa::generate("other ca").unwrap();
        let id = other
            .issue_client("test/dev", Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            ca.verify(&id.cert_pem),
            Verification::Invalid {
                cause: "INVALID_ISSUER"
            }
        );
    }

    #[test]
    fn expired_certificate_is_reported_expired() {
        let ca = TestCa::generate("test ca").unwrap();
        let minute = Duration::from_secs(60);
        let pem = ca
            .sign_csr(&csr_for("x"), "test/dev", minute, DEFAULT_BACKDATE)
            .unwrap();
        let an_hour_later = unix_now() + 3600;
        assert_eq!(
            ca.verify_at(&pem, an_hour_later),
            Verification::Invalid { cause: "EXPIRED" }
        );
    }

    #[test]
    fn garbage_is_an_invalid_certificate_and_an_invalid_csr() {
        let ca = TestCa::generate("test ca").unwrap();
        assert_eq!(
            ca.verify("nope"),
            Verification::Invalid { cause: "INVALID" }
        );
        let err = ca.sign_csr("nope", "t/d", Duration::ZERO, Duration::ZERO);
        assert!(matches!(err, Err(CaError::InvalidCsr)));
    }
}
