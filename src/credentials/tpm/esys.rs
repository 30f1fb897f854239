//! The few ESAPI calls the backend makes, over tpm2-tss's C libraries (libtss2-esys,
//! -tctildr and -mu, through the `tss-esapi-sys` bindings): small safe functions and owners
//! that release what the C side allocated.
//!
//! - [`Context`] owns an ESAPI context and the TCTI under it (`Esys_Finalize`, then
//!   `Tss2_TctiLdr_Finalize`, when dropped) and remembers the transient objects and sessions
//!   it made: [`Context::flush`] forgets them, dropping the context flushes those left.
//! - Structures ESAPI returns are freed with `Esys_Free` (`raw::Out`); the sensitive ones are
//!   zeroed first.
//! - Every failure is the TSS2 return code as is ([`Error::Tss`]) or, for a value refused
//!   before reaching tpm2-tss, [`Error::Local`].
//!
//! The plumbing under these (owners, buffers, marshalling) is in `raw.rs`.

use std::ptr::{self, NonNull};

use tss_esapi_sys as sys;

pub(super) use super::raw::{Error, Sensitive, marshal_public, unmarshal_public};
use super::raw::{Out, TctiContext, check, public_buffer, sensitive_create, tpm2b, wipe};
use super::tcti::Tcti;

/// An ESAPI object handle (`ESYS_TR`): a transient object or a session.
pub(super) type Handle = sys::ESYS_TR;

pub(super) const PASSWORD: Handle = sys::ESYS_TR_PASSWORD;
const NONE: Handle = sys::ESYS_TR_NONE;
const OWNER: Handle = sys::ESYS_TR_RH_OWNER;

const ALG_AES: u16 = 0x0006;
const ALG_SHA256: u16 = 0x000B;
const ALG_NULL: u16 = 0x0010;
pub(super) const ALG_ECDSA: u16 = 0x0018;
pub(super) const ALG_ECC: u16 = 0x0023;
const ALG_CFB: u16 = 0x0043;
const SE_HMAC: u8 = 0x00;
const ST_HASHCHECK: u16 = 0x8024;
const RH_NULL: u32 = 0x4000_0007;
/// `TPMA_SESSION` bits.
pub(super) const SESSION_CONTINUE: u8 = 0x01;
pub(super) const SESSION_DECRYPT: u8 = 0x20;
pub(super) const SESSION_ENCRYPT: u8 = 0x40;

/// An ESAPI context on its own TCTI.
pub(super) struct Context {
    esys: NonNull<sys::ESYS_CONTEXT>,
    /// Transient objects and sessions not flushed yet.
    loaded: Vec<Handle>,
    // Dropped after `Drop::drop` finalized `esys`.
    _tcti: TctiContext,
}

impl Context {
    /// Opens the TCTI `tcti` and an ESAPI context on it (no TPM command is sent yet).
    pub(super) fn new(tcti: &Tcti) -> Result<Context, Error> {
        let tcti = TctiContext::open(tcti)?;
        let mut esys = ptr::null_mut();
        // SAFETY: valid out pointer, a live TCTI (it outlives the context: see `Drop`), and
        // null for the default ABI version.
        check(unsafe { sys::Esys_Initialize(&mut esys, tcti.0.as_ptr(), ptr::null_mut()) })?;
        let esys = NonNull::new(esys).ok_or(Error::Local("ESAPI returned no context"))?;
        Ok(Context {
            esys,
            loaded: Vec::new(),
            _tcti: tcti,
        })
    }

    fn raw(&mut self) -> *mut sys::ESYS_CONTEXT {
        self.esys.as_ptr()
    }

    fn track(&mut self, handle: Handle) -> Handle {
        self.loaded.push(handle);
        handle
    }

    /// `TPM2_CreatePrimary` in the owner hierarchy (empty password) with `template` (a
    /// TPMT_PUBLIC in TPM marshalling), empty auth and data.
    pub(super) fn create_primary(&mut self, template: &[u8]) -> Result<Handle, Error> {
        let public = public_buffer(template)?;
        let sensitive = sensitive_create();
        let mut handle = NONE;
        let (mut out_public, mut data, mut hash, mut ticket) =
            (Out::new(), Out::new(), Out::new(), Out::new());
        // SAFETY: a live context, input structures that outlive the call, out pointers that
        // ESAPI fills on success (freed by `Out`).
        check(unsafe {
            sys::Esys_CreatePrimary(
                self.raw(),
                OWNER,
                PASSWORD,
                NONE,
                NONE,
                &sensitive,
                &public,
                &sys::TPM2B_DATA::default(),
                &sys::TPML_PCR_SELECTION::default(),
                &mut handle,
                &mut out_public.0,
                &mut data.0,
                &mut hash.0,
                &mut ticket.0,
            )
        })?;
        Ok(self.track(handle))
    }

    /// `TPM2_Create` under `parent`, authorised by `session`, with `template` and `data` as
    /// the sensitive data (the secret of a sealed object; empty for a key). Returns the
    /// object's public area (TPM marshalling) and private area (TPM2B_PRIVATE contents).
    pub(super) fn create(
        &mut self,
        parent: Handle,
        session: Handle,
        template: &[u8],
        data: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let public = public_buffer(template)?;
        let mut sensitive = sensitive_create();
        let buffer = &mut sensitive.sensitive.data.buffer;
        let slot = buffer
            .get_mut(..data.len())
            .ok_or(Error::Local("the sensitive data is too long"))?;
        slot.copy_from_slice(data);
        sensitive.sensitive.data.size = u16::try_from(data.len()).unwrap_or(u16::MAX);
        let mut private = Out::<sys::TPM2B_PRIVATE>::new();
        let mut out_public = Out::<sys::TPM2B_PUBLIC>::new();
        let (mut creation, mut hash, mut ticket) = (Out::new(), Out::new(), Out::new());
        // SAFETY: as in `create_primary`.
        let rc = unsafe {
            sys::Esys_Create(
                self.raw(),
                parent,
                session,
                NONE,
                NONE,
                &sensitive,
                &public,
                &sys::TPM2B_DATA::default(),
                &sys::TPML_PCR_SELECTION::default(),
                &mut private.0,
                &mut out_public.0,
                &mut creation.0,
                &mut hash.0,
                &mut ticket.0,
            )
        };
        wipe(&mut sensitive);
        check(rc)?;
        let private = private.get()?;
        let private = private
            .buffer
            .get(..usize::from(private.size))
            .ok_or(Error::Local("ESAPI returned an oversized private area"))?;
        Ok((
            marshal_public(&out_public.get()?.publicArea)?,
            private.to_vec(),
        ))
    }

    /// `TPM2_Load` of `public` (TPM marshalling) and `private` under `parent` (password).
    pub(super) fn load(
        &mut self,
        parent: Handle,
        public: &[u8],
        private: &[u8],
    ) -> Result<Handle, Error> {
        let public = public_buffer(public)?;
        let mut in_private = sys::TPM2B_PRIVATE::default();
        in_private
            .buffer
            .get_mut(..private.len())
            .ok_or(Error::Local("the private area is too long"))?
            .copy_from_slice(private);
        in_private.size = u16::try_from(private.len()).unwrap_or(u16::MAX);
        let mut handle = NONE;
        // SAFETY: as in `create_primary`.
        check(unsafe {
            sys::Esys_Load(
                self.raw(),
                parent,
                PASSWORD,
                NONE,
                NONE,
                &in_private,
                &public,
                &mut handle,
            )
        })?;
        Ok(self.track(handle))
    }

    /// `TPM2_Sign` of `digest` with `key` (password), with the key's own scheme and a null
    /// hashcheck ticket. Returns the signature algorithm and, for ECDSA, (r, s).
    pub(super) fn sign(&mut self, key: Handle, digest: &[u8]) -> Result<Signature, Error> {
        let mut in_digest = sys::TPM2B_DIGEST::default();
        in_digest
            .buffer
            .get_mut(..digest.len())
            .ok_or(Error::Local("the digest is too long"))?
            .copy_from_slice(digest);
        in_digest.size = u16::try_from(digest.len()).unwrap_or(u16::MAX);
        let scheme = sys::TPMT_SIG_SCHEME {
            scheme: ALG_NULL,
            ..Default::default()
        };
        // The key is not restricted: the TPM needn't have hashed the message itself.
        let ticket = sys::TPMT_TK_HASHCHECK {
            tag: ST_HASHCHECK,
            hierarchy: RH_NULL,
            digest: sys::TPM2B_DIGEST::default(),
        };
        let mut signature = Out::<sys::TPMT_SIGNATURE>::new();
        // SAFETY: as in `create_primary`.
        check(unsafe {
            sys::Esys_Sign(
                self.raw(),
                key,
                PASSWORD,
                NONE,
                NONE,
                &in_digest,
                &scheme,
                &ticket,
                &mut signature.0,
            )
        })?;
        let signature = signature.get()?;
        if signature.sigAlg != ALG_ECDSA {
            return Ok(Signature::Other);
        }
        // SAFETY: `sigAlg` says the ECDSA member is the one ESAPI unmarshalled; it is made of
        // integers and byte arrays, valid for any bit pattern anyway.
        let ecdsa = unsafe { &signature.signature.ecdsa };
        Ok(Signature::Ecdsa {
            r: tpm2b(ecdsa.signatureR.size, &ecdsa.signatureR.buffer)?,
            s: tpm2b(ecdsa.signatureS.size, &ecdsa.signatureS.buffer)?,
        })
    }

    /// `TPM2_Unseal` of `object`, authorised by `session`; the data is zeroed on drop.
    pub(super) fn unseal(&mut self, object: Handle, session: Handle) -> Result<Sensitive, Error> {
        let mut data = Out::<sys::TPM2B_SENSITIVE_DATA>::new();
        // SAFETY: as in `create_primary`.
        check(unsafe { sys::Esys_Unseal(self.raw(), object, session, NONE, NONE, &mut data.0) })?;
        let value = data.get().and_then(|d| tpm2b(d.size, &d.buffer));
        if !data.0.is_null() {
            // SAFETY: allocated and initialised by ESAPI, ours until `data` is dropped.
            wipe(unsafe { &mut *data.0 });
        }
        value.map(Sensitive::from)
    }

    /// `TPM2_StartAuthSession`: an HMAC session (SHA-256, AES-128-CFB parameter encryption)
    /// salted with `salt_key`, bound to nothing.
    pub(super) fn start_salted_session(&mut self, salt_key: Handle) -> Result<Handle, Error> {
        let symmetric = sys::TPMT_SYM_DEF {
            algorithm: ALG_AES,
            keyBits: sys::TPMU_SYM_KEY_BITS { aes: 128 },
            mode: sys::TPMU_SYM_MODE { aes: ALG_CFB },
        };
        let mut session = NONE;
        // SAFETY: a live context, inputs that outlive the call (a null nonce: ESAPI makes
        // one), a valid out pointer.
        check(unsafe {
            sys::Esys_StartAuthSession(
                self.raw(),
                salt_key,
                NONE,
                NONE,
                NONE,
                NONE,
                ptr::null(),
                SE_HMAC,
                &symmetric,
                ALG_SHA256,
                &mut session,
            )
        })?;
        Ok(self.track(session))
    }

    /// `Esys_TRSess_SetAttributes`: sets the `TPMA_SESSION` bits in `mask` to `attributes`.
    pub(super) fn set_session_attributes(
        &mut self,
        session: Handle,
        attributes: u8,
        mask: u8,
    ) -> Result<(), Error> {
        // SAFETY: a live context; ESAPI checks the handle.
        check(unsafe { sys::Esys_TRSess_SetAttributes(self.raw(), session, attributes, mask) })
    }

    /// `TPM2_FlushContext`; the handle is forgotten once flushed.
    pub(super) fn flush(&mut self, handle: Handle) -> Result<(), Error> {
        // SAFETY: a live context; ESAPI checks the handle.
        check(unsafe { sys::Esys_FlushContext(self.raw(), handle) })?;
        self.loaded.retain(|&loaded| loaded != handle);
        Ok(())
    }
}

impl Drop for Context {
    /// Flushes what is still loaded (best effort: the TPM may be gone), then finalizes the
    /// context; the TCTI is finalized after it.
    fn drop(&mut self) {
        for handle in std::mem::take(&mut self.loaded) {
            // SAFETY: a live context; ESAPI checks the handle.
            let _ = unsafe { sys::Esys_FlushContext(self.raw(), handle) };
        }
        let mut esys = self.esys.as_ptr();
        // SAFETY: made by Esys_Initialize, finalized once, never used afterwards.
        unsafe { sys::Esys_Finalize(&mut esys) }
    }
}

/// What `TPM2_Sign` returned.
pub(super) enum Signature {
    /// Big-endian r and s.
    Ecdsa { r: Vec<u8>, s: Vec<u8> },
    /// Another algorithm.
    Other,
}
