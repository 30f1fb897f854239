//! A throwaway certificate authority (openssl), standing in for Pairing's CFSSL.

use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Time, Asn1Type};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private, Public};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509Builder, X509Name, X509NameBuilder, X509NameRef, X509Req};

use crate::credentials::Secret;

pub(crate) struct TestCa {
    key: PKey<Private>,
    cert: X509,
}

fn unix(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    }
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn cn_name(cn: &str) -> X509Name {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid_with_type(Nid::COMMONNAME, cn, Asn1Type::UTF8STRING)
        .unwrap();
    name.build()
}

fn builder(
    name: &X509NameRef,
    public: &PKeyRef<Public>,
    not_before: i64,
    not_after: i64,
) -> X509Builder {
    let mut builder = X509Builder::new().unwrap();
    builder.set_version(2).unwrap();
    let serial = BigNum::from_u32(fastrand::u32(1..)).unwrap();
    builder
        .set_serial_number(&Asn1Integer::from_bn(&serial).unwrap())
        .unwrap();
    builder.set_subject_name(name).unwrap();
    builder.set_pubkey(public).unwrap();
    builder
        .set_not_before(&Asn1Time::from_unix(not_before).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::from_unix(not_after).unwrap())
        .unwrap();
    builder
}

fn public_of(key: &PKey<Private>) -> PKey<Public> {
    PKey::public_key_from_der(&key.public_key_to_der().unwrap()).unwrap()
}

impl TestCa {
    pub(crate) fn new(cn: &str) -> TestCa {
        let key = new_key();
        let now = unix(SystemTime::now());
        let name = cn_name(cn);
        let mut builder = builder(&name, &public_of(&key), now - 3600, now + 86_400 * 365);
        builder
            .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        builder
            .append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        builder.set_issuer_name(&name).unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        TestCa {
            key,
            cert: builder.build(),
        }
    }

    pub(crate) fn cert_pem(&self) -> String {
        String::from_utf8(self.cert.to_pem().unwrap()).unwrap()
    }

    /// Signs the key in `csr_pem` with subject `CN=<cn>` (as Pairing forces it), valid
    /// between the two instants.
    pub(crate) fn sign_csr(
        &self,
        csr_pem: &str,
        cn: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> String {
        let csr = X509Req::from_pem(csr_pem.as_bytes()).unwrap();
        let public = csr.public_key().unwrap();
        assert!(csr.verify(&public).unwrap(), "CSR signature");
        self.issue(&public, cn, unix(not_before), unix(not_after), false, None)
    }

    /// A client certificate and key, as Pairing would have issued.
    pub(crate) fn client_cert(
        &self,
        cn: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> (Secret, String) {
        let key = new_key();
        let cert = self.issue(
            &public_of(&key),
            cn,
            unix(not_before),
            unix(not_after),
            false,
            None,
        );
        (key_pem(&key), cert)
    }

    /// A server certificate for `dns`, and its key.
    pub(crate) fn server_cert(&self, dns: &str) -> (Secret, String) {
        let key = new_key();
        let now = unix(SystemTime::now());
        let cert = self.issue(
            &public_of(&key),
            dns,
            now - 60,
            now + 86_400,
            true,
            Some(dns),
        );
        (key_pem(&key), cert)
    }

    fn issue(
        &self,
        public: &PKeyRef<Public>,
        cn: &str,
        not_before: i64,
        not_after: i64,
        server: bool,
        dns: Option<&str>,
    ) -> String {
        let mut builder = builder(&cn_name(cn), public, not_before, not_after);
        builder.set_issuer_name(self.cert.subject_name()).unwrap();
        builder
            .append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        let mut eku = ExtendedKeyUsage::new();
        if server {
            eku.server_auth();
        } else {
            eku.client_auth();
        }
        builder.append_extension(eku.build().unwrap()).unwrap();
        if let Some(dns) = dns {
            let san = SubjectAlternativeName::new()
                .dns(dns)
                .build(&builder.x509v3_context(Some(&self.cert), None))
                .unwrap();
            builder.append_extension(san).unwrap();
        }
        builder.sign(&self.key, MessageDigest::sha256()).unwrap();
        String::from_utf8(builder.build().to_pem().unwrap()).unwrap()
    }
}

fn key_pem(key: &PKey<Private>) -> Secret {
    Secret::new(String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap())
}
