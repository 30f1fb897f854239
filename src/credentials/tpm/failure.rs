//! Why a TPM operation failed, sorted the way the backend must react to it.
//!
//! A TSS2 return code is 32 bits: bits 16..24 name the layer of the TPM software stack that
//! produced it (0 = the TPM itself, 7 = ESAPI, 10 = the TCTI, ...), the low 16 bits the error.
//! Only the TPM layer speaks about our objects: a `TPM2_Load` it answers with a format-one
//! code (an error tied to a parameter or handle: integrity, size, value...) means the blob was
//! not made under this TPM's storage seed, or was damaged. Everything else (no connection,
//! timeouts, object memory full, a TPM in failure mode) says nothing about the blob.

use std::fmt;

use bitfield::BitRange;
use tss_esapi::constants::response_code::Tss2ResponseCode;

/// What went wrong, as far as the caller's reaction is concerned.
#[derive(Debug)]
pub(super) enum Failure {
    /// The TPM refused one of our blobs: made under another storage seed (the TPM was cleared
    /// or replaced) or damaged. Retrying won't help.
    Rejected(String),
    /// The TPM answered with an error unrelated to our blobs (busy, out of memory, owner
    /// hierarchy locked...): worth retrying later.
    Refused(String),
    /// The TPM could not be reached or did not answer (TCTI, connection, timeout): the
    /// connection is dropped and opened again next time.
    Unreachable(String),
}

impl Failure {
    /// `command` failed while loading one of our blobs (or using it right after the load):
    /// TPM-layer refusals tied to the object mean the blob is unusable here.
    pub(super) fn load(command: &'static str, error: tss_esapi::Error) -> Failure {
        let failure = Failure::command(command, error);
        match (failure, Code::of(&error)) {
            (Failure::Refused(reason), Some(code)) if code.condemns_object() => {
                Failure::Rejected(reason)
            }
            (failure, _) => failure,
        }
    }

    /// `command` failed: a refusal if the TPM answered, unreachable otherwise.
    pub(super) fn command(command: &'static str, error: tss_esapi::Error) -> Failure {
        let Some(code) = Code::of(&error) else {
            // Raised by tss-esapi before or after talking to the TPM (a parameter out of
            // range, an answer it can't convert).
            return Failure::Refused(format!("{command}: {error}"));
        };
        let reason = format!("{command}: {code}");
        if code.is_from_tpm() {
            let hint = if command == "TPM2_CreatePrimary" && code.is_auth_failure() {
                " (the owner hierarchy has a password; astarte-agent needs it empty)"
            } else {
                ""
            };
            Failure::Refused(format!("{reason}{hint}"))
        } else {
            Failure::Unreachable(reason)
        }
    }

    pub(super) fn reason(&self) -> &str {
        match self {
            Failure::Rejected(reason) | Failure::Refused(reason) | Failure::Unreachable(reason) => {
                reason
            }
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// A raw TSS2 return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Code(u32);

const LAYER_SHIFT: u32 = 16;
const TPM_LAYER: u32 = 0;
const ESAPI_LAYER: u32 = 7;
const SYS_LAYER: u32 = 8;
const MU_LAYER: u32 = 9;
const TCTI_LAYER: u32 = 10;
const RESMGR_LAYER: u32 = 11;
/// A TPM code passed on by a resource manager (tpm2-abrmd).
const RESMGR_TPM_LAYER: u32 = 12;
/// Format-one TPM codes (bit 7) are tied to a handle, session or parameter.
const FORMAT_ONE: u32 = 0x080;
/// Format-zero TPM codes with this bit are warnings (retry later).
const WARNING: u32 = 0x800;
/// `TPM_RC_SENSITIVE`: the private area didn't unmarshal after decryption.
const RC_SENSITIVE: u32 = 0x155;
/// `TPM_RC_AUTH_FAIL` and `TPM_RC_BAD_AUTH` (format one, low 6 bits).
const RC_AUTH_FAIL: u32 = 0x0E;
const RC_BAD_AUTH: u32 = 0x22;

impl Code {
    fn of(error: &tss_esapi::Error) -> Option<Code> {
        // tss-esapi 7 doesn't hand out the raw code; its bitfield newtypes do, through
        // `BitRange` (hence the direct `bitfield` dependency, at tss-esapi's version).
        match error {
            tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatZero(rc)) => {
                Some(Code(rc.bit_range(31, 0)))
            }
            tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatOne(rc)) => {
                Some(Code(rc.bit_range(31, 0)))
            }
            tss_esapi::Error::Tss2Error(Tss2ResponseCode::Success)
            | tss_esapi::Error::WrapperError(_) => None,
        }
    }

    fn layer(self) -> u32 {
        self.0 >> LAYER_SHIFT & 0xff
    }

    /// The low 16 bits: the TPM's own code, or the stack's `TSS2_BASE_RC_*`.
    fn base(self) -> u32 {
        self.0 & 0xffff
    }

    fn is_from_tpm(self) -> bool {
        matches!(self.layer(), TPM_LAYER | RESMGR_TPM_LAYER)
    }

    fn is_auth_failure(self) -> bool {
        self.base() & FORMAT_ONE != 0 && matches!(self.base() & 0x3f, RC_AUTH_FAIL | RC_BAD_AUTH)
    }

    /// Whether the TPM's answer condemns the object it was given.
    fn condemns_object(self) -> bool {
        let base = self.base();
        self.is_from_tpm() && (base & FORMAT_ONE != 0 || base == RC_SENSITIVE)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.0;
        if self.is_from_tpm() {
            let rc = Tss2ResponseCode::from(code & 0xffff);
            let kind = if self.base() & FORMAT_ONE == 0 && self.base() & WARNING != 0 {
                "TPM warning"
            } else {
                "TPM error"
            };
            return write!(f, "{kind} {code:#x} ({rc})");
        }
        let layer = match self.layer() {
            ESAPI_LAYER => "ESAPI",
            SYS_LAYER => "SAPI",
            MU_LAYER => "marshalling",
            TCTI_LAYER => "TCTI",
            RESMGR_LAYER => "resource manager",
            _ => "TSS",
        };
        match base_name(self.base()) {
            Some(name) => write!(f, "{layer} error {code:#x} ({name})"),
            None => write!(f, "{layer} error {code:#x}"),
        }
    }
}

/// The `TSS2_BASE_RC_*` values worth a name in a log line.
fn base_name(base: u32) -> Option<&'static str> {
    Some(match base {
        1 => "general failure",
        3 => "bad context",
        4 => "ABI mismatch",
        5 => "bad reference",
        6 => "insufficient buffer",
        7 => "bad sequence",
        8 => "no connection",
        9 => "try again",
        10 => "I/O error",
        11 => "bad value",
        12 => "not permitted",
        16 => "bad size",
        17 => "malformed response",
        19 => "insufficient response",
        21 => "not supported",
        23 => "out of memory",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    // What swtpm answers to TPM2_Load of a blob made before a clear.
    #[case::integrity_of_a_foreign_blob(0x1df, true)] // TPM_RC_INTEGRITY, parameter 1
    #[case::sensitive(0x155, true)]
    #[case::bad_size(0x1d5, true)] // TPM_RC_SIZE, parameter 1
    #[case::object_memory_warning(0x902, false)]
    #[case::tpm_failure_mode(0x101, false)]
    #[case::tcti_io_error(0x000a_000a, false)]
    #[case::esapi_malformed_response(0x0007_0011, false)]
    fn only_tpm_refusals_tied_to_the_object_condemn_it(#[case] code: u32, #[case] condemned: bool) {
        assert_eq!(Code(code).condemns_object(), condemned);
    }

    #[test]
    fn stack_codes_name_their_layer() {
        assert_eq!(
            Code(0x000a_000a).to_string(),
            "TCTI error 0xa000a (I/O error)"
        );
        assert!(Code(0x902).to_string().starts_with("TPM warning 0x902"));
    }
}
