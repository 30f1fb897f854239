//! The TPM command sequences of the backend, on an open ESAPI context, and the templates of
//! the objects they make.
//!
//! Every sequence starts by re-creating the storage primary key (`TPM2_CreatePrimary` is
//! deterministic: same template, same owner seed, same key) and flushes every transient
//! object and session it created before returning, on error paths too: swtpm has no resource
//! manager in front of it and only three object slots.

use tss_esapi::Context;
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::SessionType;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Digest, EccPoint, EccScheme, HashScheme, HashcheckTicket, KeyedHashScheme, Public,
    PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters, SensitiveData, Signature,
    SignatureScheme, SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

use super::blob::{Blob, Kind};
use super::failure::Failure;

/// The TCG storage primary key template (ECC P-256, AES-128-CFB, empty unique), the SRK of the
/// TCG provisioning guidance: the same key every time for the same owner seed.
fn primary_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// The device key: ECC P-256 bound to ECDSA-SHA256, made inside the TPM and never leaving it,
/// not restricted (TLS signs digests the TPM did not hash).
pub(super) fn key_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_sign_encrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_unrestricted_signing_key(
                EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// The sealed secret: a keyed-hash data object holding the secret's bytes, readable only
/// through `TPM2_Unseal` on this TPM.
pub(super) fn sealed_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

/// Whether `public` is what this backend makes for `kind` (its unique field aside).
pub(super) fn matches_template(public: &Public, kind: Kind) -> bool {
    let template = match kind {
        Kind::Key => key_template(),
        Kind::Sealed => sealed_template(),
    };
    let Ok(template) = template else {
        return false;
    };
    match (public, &template) {
        (
            Public::Ecc {
                object_attributes,
                name_hashing_algorithm,
                auth_policy,
                parameters,
                ..
            },
            Public::Ecc {
                object_attributes: a,
                name_hashing_algorithm: h,
                auth_policy: p,
                parameters: q,
                ..
            },
        ) => {
            (
                object_attributes,
                name_hashing_algorithm,
                auth_policy,
                parameters,
            ) == (a, h, p, q)
        }
        (
            Public::KeyedHash {
                object_attributes,
                name_hashing_algorithm,
                auth_policy,
                parameters,
                ..
            },
            Public::KeyedHash {
                object_attributes: a,
                name_hashing_algorithm: h,
                auth_policy: p,
                parameters: q,
                ..
            },
        ) => {
            (
                object_attributes,
                name_hashing_algorithm,
                auth_policy,
                parameters,
            ) == (a, h, p, q)
        }
        _ => false,
    }
}

/// Makes a new device key under the storage primary key.
pub(super) fn create_key(context: &mut Context) -> Result<Blob, Failure> {
    with_primary(context, |context, primary| {
        let template = key_template().map_err(|e| Failure::command("key template", e))?;
        let created = context
            .execute_with_session(Some(AuthSession::Password), |context| {
                context.create(primary, template, None, None, None, None)
            })
            .map_err(|e| Failure::command("TPM2_Create", e))?;
        Ok(Blob {
            public: created.out_public,
            private: created.out_private,
        })
    })
}

/// Loads `blob` and flushes it again: proves this TPM still accepts it.
pub(super) fn check_loads(context: &mut Context, blob: &Blob) -> Result<(), Failure> {
    with_primary(context, |context, primary| {
        let key = load(context, primary, blob)?;
        flush_after(context, key.into(), Ok(()))
    })
}

/// Signs a SHA-256 `digest` with the device key in `blob`; returns the signature's (r, s).
pub(super) fn sign(
    context: &mut Context,
    blob: &Blob,
    digest: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), Failure> {
    let digest = Digest::try_from(digest).map_err(|e| Failure::command("digest", e))?;
    // A null ticket: the key is not restricted, so the TPM needn't have hashed the message.
    let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .map_err(|e| Failure::command("hashcheck ticket", e))?;
    with_primary(context, |context, primary| {
        let key = load(context, primary, blob)?;
        let signed = context
            .execute_with_session(Some(AuthSession::Password), |context| {
                context.sign(key, digest, SignatureScheme::Null, ticket)
            })
            .map_err(|e| Failure::command("TPM2_Sign", e));
        let signature = flush_after(context, key.into(), signed)?;
        match signature {
            Signature::EcDsa(signature) => Ok((
                signature.signature_r().value().to_vec(),
                signature.signature_s().value().to_vec(),
            )),
            _ => Err(Failure::Rejected(
                "TPM2_Sign: the key made a non-ECDSA signature".into(),
            )),
        }
    })
}

/// Seals `secret` under the storage primary key. The secret travels to the TPM encrypted
/// (a session salted with the primary key), so it is not readable on the bus either.
pub(super) fn seal(context: &mut Context, secret: &SensitiveData) -> Result<Blob, Failure> {
    with_primary(context, |context, primary| {
        let template = sealed_template().map_err(|e| Failure::command("sealed template", e))?;
        with_salted_session(context, primary, Encrypt::Command, |context, session| {
            context
                .execute_with_session(Some(session), |context| {
                    context.create(primary, template, None, Some(secret.clone()), None, None)
                })
                .map_err(|e| Failure::command("TPM2_Create", e))
        })
        .map(|created| Blob {
            public: created.out_public,
            private: created.out_private,
        })
    })
}

/// Unseals the secret in `blob`; the TPM's answer is encrypted on the bus like [`seal`]'s
/// request.
pub(super) fn unseal(context: &mut Context, blob: &Blob) -> Result<SensitiveData, Failure> {
    with_primary(context, |context, primary| {
        let object = load(context, primary, blob)?;
        let unsealed =
            with_salted_session(context, primary, Encrypt::Response, |context, session| {
                context
                    .execute_with_session(Some(session), |context| context.unseal(object.into()))
                    // The load proved the blob is this TPM's: a refusal now is about something
                    // else, and must not pass for a lost secret.
                    .map_err(|e| Failure::command("TPM2_Unseal", e))
            });
        flush_after(context, object.into(), unsealed)
    })
}

/// Runs `f` with the storage primary key loaded, then flushes it.
fn with_primary<T>(
    context: &mut Context,
    f: impl FnOnce(&mut Context, KeyHandle) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let template = primary_template().map_err(|e| Failure::command("primary template", e))?;
    let primary = context
        .execute_with_session(Some(AuthSession::Password), |context| {
            context.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map_err(|e| Failure::command("TPM2_CreatePrimary", e))?
        .key_handle;
    let result = f(context, primary);
    flush_after(context, primary.into(), result)
}

fn load(context: &mut Context, primary: KeyHandle, blob: &Blob) -> Result<KeyHandle, Failure> {
    context
        .execute_with_session(Some(AuthSession::Password), |context| {
            context.load(primary, blob.private.clone(), blob.public.clone())
        })
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
    salt_key: KeyHandle,
    encrypt: Encrypt,
    f: impl FnOnce(&mut Context, AuthSession) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let session = context
        .start_auth_session(
            Some(salt_key),
            None,
            None,
            SessionType::Hmac,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(|e| Failure::command("TPM2_StartAuthSession", e))?
        .ok_or_else(|| Failure::Refused("TPM2_StartAuthSession: no session handle".into()))?;
    let handle = ObjectHandle::from(SessionHandle::from(session));
    let (attributes, mask) = match encrypt {
        Encrypt::Command => SessionAttributesBuilder::new().with_decrypt(true),
        Encrypt::Response => SessionAttributesBuilder::new().with_encrypt(true),
    }
    .with_continue_session(true)
    .build();
    let result = context
        .tr_sess_set_attributes(session, attributes, mask)
        .map_err(|e| Failure::command("session attributes", e))
        .and_then(|()| f(context, session));
    flush_after(context, handle, result)
}

/// Flushes `handle` whatever `result` is; the first failure wins.
fn flush_after<T>(
    context: &mut Context,
    handle: ObjectHandle,
    result: Result<T, Failure>,
) -> Result<T, Failure> {
    let flushed = context
        .flush_context(handle)
        .map_err(|e| Failure::command("TPM2_FlushContext", e));
    let value = result?;
    flushed?;
    Ok(value)
}
