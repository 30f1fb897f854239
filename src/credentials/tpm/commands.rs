//! The TPM command sequences of the backend, on an open ESAPI context, and the templates of
//! the objects they make.
//!
//! Every sequence starts by re-creating the storage primary key (`TPM2_CreatePrimary` is
//! deterministic: same template, same owner seed, same key) and flushes every transient
//! object and session it created before returning, on error paths too: swtpm has no resource
//! manager in front of it and only three object slots.

use super::blob::{Blob, Kind};
use super::esys::{
    Context, Handle, PASSWORD, SESSION_CONTINUE, SESSION_DECRYPT, SESSION_ENCRYPT, Sensitive,
    Signature,
};
use super::failure::Failure;

/// The TCG storage primary key template (ECC P-256, AES-128-CFB, empty unique), the SRK of the
/// TCG provisioning guidance: the same key every time for the same owner seed. Like the other
/// templates, a TPMT_PUBLIC in TPM marshalling, byte for byte what tss-esapi 7.7 sent before
/// (a different template would be a different primary key, and no existing blob would load).
const PRIMARY_TEMPLATE: &[u8] = &[
    0x00, 0x23, // type: TPM_ALG_ECC
    0x00, 0x0b, // nameAlg: TPM_ALG_SHA256
    // objectAttributes: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA,
    // restricted, decrypt
    0x00, 0x03, 0x04, 0x72, //
    0x00, 0x00, // authPolicy: empty
    0x00, 0x06, 0x00, 0x80, 0x00, 0x43, // symmetric: AES, 128 bits, CFB
    0x00, 0x10, // scheme: TPM_ALG_NULL
    0x00, 0x03, // curveID: TPM_ECC_NIST_P256
    0x00, 0x10, // kdf: TPM_ALG_NULL
    0x00, 0x00, 0x00, 0x00, // unique: empty x and y
];

/// The device key: ECC P-256 bound to ECDSA-SHA256, made inside the TPM and never leaving it,
/// not restricted (TLS signs digests the TPM did not hash).
const KEY_TEMPLATE: &[u8] = &[
    0x00, 0x23, // type: TPM_ALG_ECC
    0x00, 0x0b, // nameAlg: TPM_ALG_SHA256
    // objectAttributes: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA, sign
    0x00, 0x04, 0x04, 0x72, //
    0x00, 0x00, // authPolicy: empty
    0x00, 0x10, // symmetric: TPM_ALG_NULL
    0x00, 0x18, 0x00, 0x0b, // scheme: TPM_ALG_ECDSA with TPM_ALG_SHA256
    0x00, 0x03, // curveID: TPM_ECC_NIST_P256
    0x00, 0x10, // kdf: TPM_ALG_NULL
    0x00, 0x00, 0x00, 0x00, // unique: empty x and y
];

/// The sealed secret: a keyed-hash data object holding the secret's bytes, readable only
/// through `TPM2_Unseal` on this TPM.
const SEALED_TEMPLATE: &[u8] = &[
    0x00, 0x08, // type: TPM_ALG_KEYEDHASH
    0x00, 0x0b, // nameAlg: TPM_ALG_SHA256
    0x00, 0x00, 0x04, 0x52, // objectAttributes: fixedTPM, fixedParent, userWithAuth, noDA
    0x00, 0x00, // authPolicy: empty
    0x00, 0x10, // scheme: TPM_ALG_NULL
    0x00, 0x00, // unique: empty digest
];

/// The template of the objects of `kind`.
pub(super) fn template(kind: Kind) -> &'static [u8] {
    match kind {
        Kind::Key => KEY_TEMPLATE,
        Kind::Sealed => SEALED_TEMPLATE,
    }
}

/// Whether `public` (a TPMT_PUBLIC in canonical TPM marshalling) is what this backend makes
/// for `kind`: the template's type, name algorithm, attributes, policy and parameters, with any
/// unique field. The template's own unique field is empty (4 bytes for ECC, 2 for keyed-hash).
pub(super) fn matches_template(public: &[u8], kind: Kind) -> bool {
    let template = template(kind);
    let unique = match kind {
        Kind::Key => 4,
        Kind::Sealed => 2,
    };
    public.starts_with(&template[..template.len() - unique])
}

/// Makes a new device key under the storage primary key.
pub(super) fn create_key(context: &mut Context) -> Result<Blob, Failure> {
    with_primary(context, |context, primary| {
        let (public, private) = context
            .create(primary, PASSWORD, KEY_TEMPLATE, &[])
            .map_err(|e| Failure::command("TPM2_Create", e))?;
        Ok(Blob { public, private })
    })
}

/// Loads `blob` and flushes it again: proves this TPM still accepts it.
pub(super) fn check_loads(context: &mut Context, blob: &Blob) -> Result<(), Failure> {
    with_primary(context, |context, primary| {
        let key = load(context, primary, blob)?;
        flush_after(context, key, Ok(()))
    })
}

/// Signs a SHA-256 `digest` with the device key in `blob`; returns the signature's (r, s).
pub(super) fn sign(
    context: &mut Context,
    blob: &Blob,
    digest: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), Failure> {
    with_primary(context, |context, primary| {
        let key = load(context, primary, blob)?;
        let signed = context
            .sign(key, digest)
            .map_err(|e| Failure::command("TPM2_Sign", e));
        match flush_after(context, key, signed)? {
            Signature::Ecdsa { r, s } => Ok((r, s)),
            Signature::Other => Err(Failure::Rejected(
                "TPM2_Sign: the key made a non-ECDSA signature".into(),
            )),
        }
    })
}

/// Seals `secret` under the storage primary key. The secret travels to the TPM encrypted
/// (a session salted with the primary key), so it is not readable on the bus either.
pub(super) fn seal(context: &mut Context, secret: &[u8]) -> Result<Blob, Failure> {
    with_primary(context, |context, primary| {
        with_salted_session(context, primary, Encrypt::Command, |context, session| {
            context
                .create(primary, session, SEALED_TEMPLATE, secret)
                .map_err(|e| Failure::command("TPM2_Create", e))
        })
        .map(|(public, private)| Blob { public, private })
    })
}

/// Unseals the secret in `blob`; the TPM's answer is encrypted on the bus like [`seal`]'s
/// request.
pub(super) fn unseal(context: &mut Context, blob: &Blob) -> Result<Sensitive, Failure> {
    with_primary(context, |context, primary| {
        let object = load(context, primary, blob)?;
        let unsealed =
            with_salted_session(context, primary, Encrypt::Response, |context, session| {
                context
                    .unseal(object, session)
                    // The load proved the blob is this TPM's: a refusal now is about something
                    // else, and must not pass for a lost secret.
                    .map_err(|e| Failure::command("TPM2_Unseal", e))
            });
        flush_after(context, object, unsealed)
    })
}

/// Runs `f` with the storage primary key loaded, then flushes it.
fn with_primary<T>(
    context: &mut Context,
    f: impl FnOnce(&mut Context, Handle) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let primary = context
        .create_primary(PRIMARY_TEMPLATE)
        .map_err(|e| Failure::command("TPM2_CreatePrimary", e))?;
    let result = f(context, primary);
    flush_after(context, primary, result)
}

fn load(context: &mut Context, primary: Handle, blob: &Blob) -> Result<Handle, Failure> {
    context
        .load(primary, &blob.public, &blob.private)
        .map_err(|e| Failure::load("TPM2_Load", e))
}

/// Which half of the exchange a salted session encrypts (a command with no parameter can't
/// have its parameters encrypted, and the TPM refuses the attribute then).
enum Encrypt {
    Command,
    Response,
}

/// Runs `f` with an HMAC session salted with `salt_key` and parameter encryption
/// (AES-128-CFB), then flushes the session.
fn with_salted_session<T>(
    context: &mut Context,
    salt_key: Handle,
    encrypt: Encrypt,
    f: impl FnOnce(&mut Context, Handle) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let session = context
        .start_salted_session(salt_key)
        .map_err(|e| Failure::command("TPM2_StartAuthSession", e))?;
    let direction = match encrypt {
        Encrypt::Command => SESSION_DECRYPT,
        Encrypt::Response => SESSION_ENCRYPT,
    };
    let attributes = direction | SESSION_CONTINUE;
    let result = context
        .set_session_attributes(session, attributes, attributes)
        .map_err(|e| Failure::command("session attributes", e))
        .and_then(|()| f(context, session));
    flush_after(context, session, result)
}

/// Flushes `handle` whatever `result` is; the first failure wins.
fn flush_after<T>(
    context: &mut Context,
    handle: Handle,
    result: Result<T, Failure>,
) -> Result<T, Failure> {
    let flushed = context
        .flush(handle)
        .map_err(|e| Failure::command("TPM2_FlushContext", e));
    let value = result?;
    flushed?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::tpm::esys;

    /// The templates are well-formed TPMT_PUBLICs, in canonical form.
    #[test]
    fn templates_round_trip_through_tss2_mu() {
        for template in [PRIMARY_TEMPLATE, KEY_TEMPLATE, SEALED_TEMPLATE] {
            let (public, used) = esys::unmarshal_public(template).unwrap();
            assert_eq!(used, template.len());
            assert_eq!(esys::marshal_public(&public).unwrap(), template);
        }
    }

    #[test]
    fn each_template_matches_its_own_kind_only() {
        assert!(matches_template(KEY_TEMPLATE, Kind::Key));
        assert!(matches_template(SEALED_TEMPLATE, Kind::Sealed));
        assert!(!matches_template(KEY_TEMPLATE, Kind::Sealed));
        assert!(!matches_template(SEALED_TEMPLATE, Kind::Key));
        assert!(!matches_template(PRIMARY_TEMPLATE, Kind::Key));
    }
}
