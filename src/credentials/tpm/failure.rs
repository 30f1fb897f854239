//! Why a TPM operation failed, sorted the way the backend must react to it.
//!
//! A TSS2 return code is 32 bits: bits 16..24 name the layer of the TPM software stack that
//! produced it (0 = the TPM itself, 7 = ESAPI, 10 = the TCTI, ...), the low 16 bits the error.
//! Only the TPM layer speaks about our objects: a `TPM2_Load` it answers with a format-one
//! code (an error tied to a parameter or handle: integrity, size, value...) means the blob was
//! not made under this TPM's storage seed, or was damaged. Everything else (no connection,
//! timeouts, object memory full, a TPM in failure mode) says nothing about the blob.

use std::fmt;

use super::esys::Error;

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
    pub(super) fn load(command: &'static str, error: Error) -> Failure {
        let failure = Failure::command(command, error);
        match (failure, Code::of(error)) {
            (Failure::Refused(reason), Some(code)) if code.condemns_object() => {
                Failure::Rejected(reason)
            }
            (failure, _) => failure,
        }
    }

    /// `command` failed: a refusal if the TPM answered, unreachable otherwise.
    pub(super) fn command(command: &'static str, error: Error) -> Failure {
        let Some(code) = Code::of(error) else {
            // Refused before talking to the TPM (a parameter out of range) or an answer that
            // can't be used.
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
    fn of(error: Error) -> Option<Code> {
        match error {
            Error::Tss(rc) => Some(Code(rc)),
            Error::Local(_) => None,
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
            let kind = if self.base() & FORMAT_ONE == 0 && self.base() & WARNING != 0 {
                "TPM warning"
            } else {
                "TPM error"
            };
            return match tpm_rc_name(self.base()) {
                Some(name) => write!(
                    f,
                    "{kind} {code:#x} (TPM_RC_{name}{})",
                    Subject(self.base())
                ),
                None => write!(f, "{kind} {code:#x}"),
            };
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

/// The name of a TPM response code (TPM 2.0 Part 2, `TPM_RC`), after `TPM_RC_`.
fn tpm_rc_name(rc: u32) -> Option<&'static str> {
    /// Bit 10 of a format-zero code: defined by the TPM vendor.
    const VENDOR: u32 = 0x400;
    if rc & FORMAT_ONE != 0 {
        return format_one_name(rc & 0x3f);
    }
    if rc & VENDOR != 0 {
        return Some("VENDOR_SPECIFIC");
    }
    if rc & WARNING != 0 {
        return warning_name(rc & 0x7f);
    }
    Some(match rc & 0x7f {
        0x00 => "INITIALIZE",
        0x01 => "FAILURE",
        0x03 => "SEQUENCE",
        0x0B => "PRIVATE",
        0x19 => "HMAC",
        0x20 => "DISABLED",
        0x21 => "EXCLUSIVE",
        0x24 => "AUTH_TYPE",
        0x25 => "AUTH_MISSING",
        0x26 => "POLICY",
        0x27 => "PCR",
        0x28 => "PCR_CHANGED",
        0x2D => "UPGRADE",
        0x2E => "TOO_MANY_CONTEXTS",
        0x2F => "AUTH_UNAVAILABLE",
        0x30 => "REBOOT",
        0x31 => "UNBALANCED",
        0x42 => "COMMAND_SIZE",
        0x43 => "COMMAND_CODE",
        0x44 => "AUTHSIZE",
        0x45 => "AUTH_CONTEXT",
        0x46 => "NV_RANGE",
        0x47 => "NV_SIZE",
        0x48 => "NV_LOCKED",
        0x49 => "NV_AUTHORIZATION",
        0x4A => "NV_UNINITIALIZED",
        0x4B => "NV_SPACE",
        0x4C => "NV_DEFINED",
        0x50 => "BAD_CONTEXT",
        0x51 => "CPHASH",
        0x52 => "PARENT",
        0x53 => "NEEDS_TEST",
        0x54 => "NO_RESULT",
        0x55 => "SENSITIVE",
        _ => return None,
    })
}

fn warning_name(number: u32) -> Option<&'static str> {
    Some(match number {
        0x01 => "CONTEXT_GAP",
        0x02 => "OBJECT_MEMORY",
        0x03 => "SESSION_MEMORY",
        0x04 => "MEMORY",
        0x05 => "SESSION_HANDLES",
        0x06 => "OBJECT_HANDLES",
        0x07 => "LOCALITY",
        0x08 => "YIELDED",
        0x09 => "CANCELED",
        0x0A => "TESTING",
        // Followed by the handle or session number (`Subject`).
        0x10..=0x16 => "REFERENCE_H",
        0x18..=0x1E => "REFERENCE_S",
        0x20 => "NV_RATE",
        0x21 => "LOCKOUT",
        0x22 => "RETRY",
        0x23 => "NV_UNAVAILABLE",
        _ => return None,
    })
}

fn format_one_name(number: u32) -> Option<&'static str> {
    Some(match number {
        0x01 => "ASYMMETRIC",
        0x02 => "ATTRIBUTES",
        0x03 => "HASH",
        0x04 => "VALUE",
        0x05 => "HIERARCHY",
        0x07 => "KEY_SIZE",
        0x08 => "MGF",
        0x09 => "MODE",
        0x0A => "TYPE",
        0x0B => "HANDLE",
        0x0C => "KDF",
        0x0D => "RANGE",
        0x0E => "AUTH_FAIL",
        0x0F => "NONCE",
        0x10 => "PP",
        0x12 => "SCHEME",
        0x15 => "SIZE",
        0x16 => "SYMMETRIC",
        0x17 => "TAG",
        0x18 => "SELECTOR",
        0x1A => "INSUFFICIENT",
        0x1B => "SIGNATURE",
        0x1C => "KEY",
        0x1D => "POLICY_FAIL",
        0x1F => "INTEGRITY",
        0x20 => "TICKET",
        0x21 => "RESERVED_BITS",
        0x22 => "BAD_AUTH",
        0x23 => "EXPIRED",
        0x24 => "POLICY_CC",
        0x25 => "BINDING",
        0x26 => "CURVE",
        0x27 => "ECC_POINT",
        _ => return None,
    })
}

/// What a TPM response code is about: `, parameter N`, `, handle N` or `, session N` for
/// format-one codes, the reference number of `TPM_RC_REFERENCE_H*`/`S*` warnings, nothing
/// otherwise.
struct Subject(u32);

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rc = self.0;
        if rc & FORMAT_ONE != 0 {
            let number = rc >> 8 & 0xf;
            return if rc & 0x40 != 0 {
                write!(f, ", parameter {number}")
            } else if number <= 7 {
                write!(f, ", handle {number}")
            } else {
                write!(f, ", session {}", number - 8)
            };
        }
        match rc & WARNING != 0 && rc & 0x400 == 0 {
            true if (0x910..=0x916).contains(&rc) => write!(f, "{}", rc - 0x910),
            true if (0x918..=0x91E).contains(&rc) => write!(f, "{}", rc - 0x918),
            _ => Ok(()),
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

    #[rstest]
    #[case::integrity(0x1df, "TPM error 0x1df (TPM_RC_INTEGRITY, parameter 1)")]
    #[case::bad_auth_in_session(0x9a2, "TPM error 0x9a2 (TPM_RC_BAD_AUTH, session 1)")]
    #[case::handle(0x18b, "TPM error 0x18b (TPM_RC_HANDLE, handle 1)")]
    #[case::object_memory(0x902, "TPM warning 0x902 (TPM_RC_OBJECT_MEMORY)")]
    #[case::reference(0x911, "TPM warning 0x911 (TPM_RC_REFERENCE_H1)")]
    #[case::failure(0x101, "TPM error 0x101 (TPM_RC_FAILURE)")]
    #[case::through_the_resource_manager(0x000c_0902, "TPM warning 0xc0902 (TPM_RC_OBJECT_MEMORY)")]
    #[case::unknown(0x17f, "TPM error 0x17f")]
    fn tpm_codes_are_named_as_in_the_specification(#[case] code: u32, #[case] text: &str) {
        assert_eq!(Code(code).to_string(), text);
    }

    #[test]
    fn local_errors_are_refusals() {
        let failure = Failure::command("TPM2_Sign", Error::Local("the digest is too long"));
        assert!(matches!(failure, Failure::Refused(_)));
        assert_eq!(failure.reason(), "TPM2_Sign: the digest is too long");
    }
}
