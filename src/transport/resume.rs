//! Whether the next connection may resume the broker's session of the previous process, so
//! that what Astarte queued for the device while the agent was stopped (a reboot, an upgrade)
//! is delivered when it comes back.
//!
//! rumqttc keeps its MQTT state in memory only, so resuming is safe only when the previous
//! process left nothing half-done: a clean stop that flushed every exchange. Such a stop
//! writes this record (`credentials/mqtt-session`: client ID and broker); the next start
//! reads and deletes it before connecting, so after a crash there is no record and the session
//! starts clean (what the broker queued meanwhile is lost; commands are re-sent by whoever
//! waits for their result). Server data is subscribed with QoS 1 at most, so no inbound QoS 2
//! exchange can be left half-done either; a QoS 1 redelivery may repeat a value.

use std::path::{Path, PathBuf};

/// The file name inside the credentials folder (a recovery wipes it with the credentials).
pub const FILE_NAME: &str = crate::credentials::MQTT_SESSION_FILE;

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

    /// Whether the previous process stopped cleanly with this `identity`; the record is
    /// consumed either way (durably), so a crash of this process starts clean next time.
    pub async fn take(&self, identity: &str) -> bool {
        let path = self.path.clone();
        let identity = identity.to_owned();
        tokio::task::spawn_blocking(move || {
            let found = std::fs::read_to_string(&path).ok()?;
            if let Err(error) = crate::fs_atomic::remove_durably(&path) {
                // Resuming now and crashing later would resume a session that is not safe.
                tracing::warn!(path = %error.path.display(), error = %error.source, "couldn't remove the MQTT session record: starting a clean session");
                return None;
            }
            Some(found.trim() == identity)
        })
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
    }

    /// Records a clean stop (an fsynced write, off the async runtime).
    pub async fn save(&self, identity: &str) {
        let (path, identity) = (self.path.clone(), identity.to_owned());
        let written = tokio::task::spawn_blocking(move || {
            crate::fs_atomic::write_atomic(&path, identity.as_bytes(), 0o600)
        })
        .await;
        if let Ok(Err(error)) = written {
            tracing::warn!(path = %error.path.display(), error = %error.source, "couldn't record the MQTT session: the next start begins a clean one");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_record_is_used_once_and_only_for_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let record = ResumeRecord::in_dir(dir.path());
        assert!(!record.take("test/dev@broker:8883").await);
        record.save("test/dev@broker:8883").await;
        assert!(record.take("test/dev@broker:8883").await);
        assert!(!record.take("test/dev@broker:8883").await, "consumed");
        record.save("test/dev@broker:8883").await;
        assert!(!record.take("test/dev@other:8883").await);
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
