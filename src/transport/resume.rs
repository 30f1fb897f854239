//! Whether the next connection may resume the broker's session of an earlier process, so that
//! what Astarte queued for the device while the agent was down (a reboot, a crash, a power
//! cut) is delivered when it comes back.
//!
//! The record (`credentials/mqtt-session`) names the session: client ID and broker. It is
//! written (fsynced) once the device's session went through a complete handshake, and says in
//! a second line whether the process stopped cleanly with nothing half-done. At the next start:
//! - no record (a new device, a recovery wiped it with the credentials, or the store was
//!   created afresh or moved aside): the agent cannot know what the broker keeps for its
//!   client ID, so it wipes it (a clean CONNECT, then at once a lasting one);
//! - a record of a clean stop: the session is resumed as it was, without a handshake;
//! - a record without it (a crash or a power cut): the session is resumed, every packet id the
//!   broker might still hold in a QoS 2 exchange is released first (PUBREL for each, see
//!   `session.rs`), and the handshake runs again (queued property changes were in memory).
//!
//! At start the clean-stop line is removed (durably) before connecting, so a crash of this
//! process is never taken for a clean stop.

use std::path::{Path, PathBuf};

/// The file name inside the credentials folder (a recovery wipes it with the credentials).
pub const FILE_NAME: &str = crate::credentials::MQTT_SESSION_FILE;
const CLEAN_STOP: &str = "clean-stop";

/// What the record says about the broker's session of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// No usable session: start clean.
    Clean,
    /// The previous process crashed (or lost its power) with this session.
    AfterCrash,
    /// The previous process stopped cleanly with this session, nothing half-done.
    AfterCleanStop,
}

#[derive(Debug, Clone)]
pub struct ResumeRecord {
    path: PathBuf,
}

impl ResumeRecord {
    pub fn in_dir(credentials_dir: &Path) -> ResumeRecord {
        ResumeRecord {
            path: credentials_dir.join(FILE_NAME),
        }
    }

    /// What the previous process left for `identity`. A clean-stop mark is consumed
    /// (durably): a crash of this process must not pass for a clean stop.
    pub async fn take(&self, identity: &str) -> Resume {
        let (path, identity) = (self.path.clone(), identity.to_owned());
        tokio::task::spawn_blocking(move || take(&path, &identity))
            .await
            .unwrap_or(Resume::Clean)
    }

    /// The broker now keeps a session for `identity` (written once its handshake finished).
    pub async fn session_exists(&self, identity: &str) {
        self.write(identity.to_owned()).await;
    }

    /// A clean stop with nothing half-done: the next start resumes without a handshake.
    pub async fn clean_stop(&self, identity: &str) {
        self.write(format!("{identity}\n{CLEAN_STOP}")).await;
    }

    /// Forgets the session (the store it matched is gone): the next start is clean.
    pub fn forget(&self) {
        match crate::fs_atomic::remove_durably(&self.path) {
            Ok(()) => {}
            Err(error) if error.source.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %error.path.display(), error = %error.source, "couldn't remove the MQTT session record")
            }
        }
    }

    /// An fsynced write, off the async runtime.
    async fn write(&self, content: String) {
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || {
            crate::fs_atomic::write_atomic(&path, content.as_bytes(), 0o600)
        })
        .await;
        if let Ok(Err(error)) = written {
            tracing::warn!(path = %error.path.display(), error = %error.source, "couldn't record the MQTT session: the next start begins a clean one");
        }
    }
}

fn take(path: &Path, identity: &str) -> Resume {
    let Ok(found) = std::fs::read_to_string(path) else {
        return Resume::Clean;
    };
    let mut lines = found.lines();
    if lines.next().map(str::trim) != Some(identity) {
        return Resume::Clean;
    }
    if lines.next().map(str::trim) != Some(CLEAN_STOP) {
        return Resume::AfterCrash;
    }
    // Resuming now and crashing later must not pass for a clean stop.
    match crate::fs_atomic::write_atomic(path, identity.as_bytes(), 0o600) {
        Ok(()) => Resume::AfterCleanStop,
        Err(error) => {
            tracing::warn!(path = %error.path.display(), error = %error.source, "couldn't update the MQTT session record: resuming as after a crash");
            Resume::AfterCrash
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: &str = "test/dev@broker:8883";

    #[tokio::test]
    async fn a_clean_stop_is_resumed_once_then_as_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let record = ResumeRecord::in_dir(dir.path());
        assert_eq!(record.take(IDENTITY).await, Resume::Clean, "no record");
        record.session_exists(IDENTITY).await;
        assert_eq!(record.take(IDENTITY).await, Resume::AfterCrash);
        assert_eq!(
            record.take(IDENTITY).await,
            Resume::AfterCrash,
            "the session stays known"
        );
        record.clean_stop(IDENTITY).await;
        assert_eq!(record.take(IDENTITY).await, Resume::AfterCleanStop);
        assert_eq!(
            record.take(IDENTITY).await,
            Resume::AfterCrash,
            "the clean-stop mark is consumed"
        );
    }

    #[tokio::test]
    async fn another_identity_or_a_forgotten_record_starts_clean() {
        let dir = tempfile::tempdir().unwrap();
        let record = ResumeRecord::in_dir(dir.path());
        record.clean_stop(IDENTITY).await;
        assert_eq!(record.take("test/dev@other:8883").await, Resume::Clean);
        record.forget();
        assert_eq!(record.take(IDENTITY).await, Resume::Clean);
        assert!(!dir.path().join(FILE_NAME).exists());
        record.forget();
    }
}
