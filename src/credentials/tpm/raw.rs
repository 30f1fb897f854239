//! The plumbing under `esys.rs`: TSS2 return codes, owners of what tpm2-tss allocates (the
//! TCTI, ESAPI's output structures), sensitive buffers zeroed when dropped, TPM2B helpers and
//! the TPMT_PUBLIC marshalling of libtss2-mu.

use std::ffi::c_void;
use std::ptr::{self, NonNull};

use tss_esapi_sys as sys;

use super::tcti::Tcti;

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Error {
    /// A TSS2 return code (never `TSS2_RC_SUCCESS`).
    Tss(u32),
    /// Refused here, before tpm2-tss was called.
    Local(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Tss(rc) => write!(f, "TSS2 error {rc:#x}"),
            Error::Local(reason) => f.write_str(reason),
        }
    }
}

pub(super) fn check(rc: sys::TSS2_RC) -> Result<(), Error> {
    match rc {
        0 => Ok(()),
        rc => Err(Error::Tss(rc)),
    }
}

/// A structure ESAPI allocated for us, freed with `Esys_Free`.
pub(super) struct Out<T>(pub(super) *mut T);

impl<T> Out<T> {
    pub(super) fn new() -> Out<T> {
        Out(ptr::null_mut())
    }

    pub(super) fn get(&self) -> Result<&T, Error> {
        // SAFETY: the pointer is null or was set by a successful ESAPI call to a structure it
        // allocated, initialised and handed over to us; it lives until `drop`.
        unsafe { self.0.as_ref() }.ok_or(Error::Local("ESAPI returned no value"))
    }
}

impl<T> Drop for Out<T> {
    fn drop(&mut self) {
        // SAFETY: null (a no-op for `free`) or allocated by ESAPI with `calloc` and not freed
        // elsewhere; nothing refers to it after this.
        unsafe { sys::Esys_Free(self.0.cast::<c_void>()) }
    }
}

/// A TCTI opened by the TCTI loader.
pub(super) struct TctiContext(pub(super) NonNull<sys::TSS2_TCTI_CONTEXT>);

impl TctiContext {
    pub(super) fn open(tcti: &Tcti) -> Result<TctiContext, Error> {
        let mut context = ptr::null_mut();
        // SAFETY: a NUL-terminated string that outlives the call and a valid out pointer.
        check(unsafe { sys::Tss2_TctiLdr_Initialize(tcti.as_c_str().as_ptr(), &mut context) })?;
        NonNull::new(context)
            .map(TctiContext)
            .ok_or(Error::Local("the TCTI loader returned no context"))
    }
}

impl Drop for TctiContext {
    fn drop(&mut self) {
        let mut context = self.0.as_ptr();
        // SAFETY: made by Tss2_TctiLdr_Initialize, finalized once, after the ESAPI context
        // using it (`Context` finalizes that one first).
        unsafe { sys::Tss2_TctiLdr_Finalize(&mut context) }
    }
}

/// Sensitive bytes (an unsealed secret), zeroed when dropped.
pub(super) struct Sensitive(Vec<u8>);

impl From<Vec<u8>> for Sensitive {
    fn from(bytes: Vec<u8>) -> Sensitive {
        Sensitive(bytes)
    }
}

impl Sensitive {
    pub(super) fn value(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Sensitive {
    fn drop(&mut self) {
        for byte in &mut self.0 {
            // SAFETY: a valid, aligned pointer to a byte of our own buffer; volatile so the
            // zeroing is not optimised away.
            unsafe { ptr::write_volatile(byte, 0) };
        }
    }
}

/// Zeroes `value` (a plain C structure) in a way the optimiser keeps.
pub(super) fn wipe<T: Copy>(value: &mut T) {
    let bytes = ptr::from_mut(value).cast::<u8>();
    for offset in 0..size_of::<T>() {
        // SAFETY: within `value`, which is ours to write; any bytes are a valid value of a
        // C structure of integers and byte arrays.
        unsafe { ptr::write_volatile(bytes.add(offset), 0) };
    }
}

/// An empty TPM2B_SENSITIVE_CREATE (no auth value, no data). Its size is that of the C
/// structure, as tss-esapi set it: the marshalling computes the real one.
pub(super) fn sensitive_create() -> sys::TPM2B_SENSITIVE_CREATE {
    sys::TPM2B_SENSITIVE_CREATE {
        size: u16::try_from(size_of::<sys::TPMS_SENSITIVE_CREATE>()).unwrap_or(u16::MAX),
        ..Default::default()
    }
}

/// The first `size` bytes of a TPM2B buffer.
pub(super) fn tpm2b(size: u16, buffer: &[u8]) -> Result<Vec<u8>, Error> {
    buffer
        .get(..usize::from(size))
        .map(<[u8]>::to_vec)
        .ok_or(Error::Local("ESAPI returned an oversized buffer"))
}

/// `bytes` as a TPMT_PUBLIC, with the number of bytes it took (the rest is ignored).
pub(super) fn unmarshal_public(bytes: &[u8]) -> Result<(sys::TPMT_PUBLIC, usize), Error> {
    let mut public = sys::TPMT_PUBLIC::default();
    let mut offset: sys::size_t = 0;
    let len = sys::size_t::try_from(bytes.len()).map_err(|_| Error::Local("too long"))?;
    // SAFETY: `bytes` is readable for `len` bytes, the out pointers are valid.
    check(unsafe {
        sys::Tss2_MU_TPMT_PUBLIC_Unmarshal(bytes.as_ptr(), len, &mut offset, &mut public)
    })?;
    let used = usize::try_from(offset).map_err(|_| Error::Local("too long"))?;
    Ok((public, used))
}

/// `public` in TPM marshalling.
pub(super) fn marshal_public(public: &sys::TPMT_PUBLIC) -> Result<Vec<u8>, Error> {
    let mut buffer = vec![0; size_of::<sys::TPMT_PUBLIC>()];
    let mut offset: sys::size_t = 0;
    let len = sys::size_t::try_from(buffer.len()).map_err(|_| Error::Local("too long"))?;
    // SAFETY: `buffer` is writable for `len` bytes, the out pointer is valid.
    check(unsafe {
        sys::Tss2_MU_TPMT_PUBLIC_Marshal(public, buffer.as_mut_ptr(), len, &mut offset)
    })?;
    buffer.truncate(usize::try_from(offset).map_err(|_| Error::Local("too long"))?);
    Ok(buffer)
}

/// A TPM2B_PUBLIC holding the TPMT_PUBLIC marshalled in `bytes`.
pub(super) fn public_buffer(bytes: &[u8]) -> Result<sys::TPM2B_PUBLIC, Error> {
    let (public_area, used) = unmarshal_public(bytes)?;
    Ok(sys::TPM2B_PUBLIC {
        size: u16::try_from(used).map_err(|_| Error::Local("the public area is too long"))?,
        publicArea: public_area,
    })
}
