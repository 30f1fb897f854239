//! The TPM backend (Cargo feature `tpm`) lands in a following commit.
compile_error!("the TPM credentials backend is not in this build yet");
