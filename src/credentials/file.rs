//! The file backend: the secret as `secret` and the device key as `client.key` (PKCS#8 PEM),
//! both 0600 in the credentials folder.

use std::path::PathBuf;
use std::sync::Arc;

use super::{
    Backend, CredentialsError, CredentialsSecret, DeviceKey, MemoryKey, read_private, write_private,
};

const SECRET_FILE: &str = "secret";
const KEY_FILE: &str = "client.key";

#[derive(Debug)]
pub struct FileBackend {
    dir: PathBuf,
}

impl FileBackend {
    pub fn new(dir: PathBuf) -> FileBackend {
        FileBackend { dir }
    }
}

impl Backend for FileBackend {
    fn kind(&self) -> &'static str {
        "file"
    }

    /// A file that doesn't hold a well-formed secret (empty, truncated, garbage) is
    /// [`CredentialsError::CorruptSecret`].
    fn load_secret(&self) -> Result<Option<CredentialsSecret>, CredentialsError> {
        let path = self.dir.join(SECRET_FILE);
        let Some(bytes) = read_private(&path)? else {
            return Ok(None);
        };
        CredentialsSecret::parse(&String::from_utf8_lossy(&bytes))
            .map(Some)
            .map_err(|source| CredentialsError::CorruptSecret { path, source })
    }

    fn save_secret(&self, secret: &CredentialsSecret) -> Result<(), CredentialsError> {
        write_private(&self.dir.join(SECRET_FILE), secret.expose().as_bytes())
    }

    fn load_key(&self) -> Result<Option<Arc<dyn DeviceKey>>, CredentialsError> {
        let path = self.dir.join(KEY_FILE);
        let Some(bytes) = read_private(&path)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| CredentialsError::CorruptKey {
            path: path.clone(),
            reason,
        };
        let pem = String::from_utf8(bytes).map_err(|_| corrupt("not UTF-8 text".into()))?;
        let key = MemoryKey::from_pem(&pem).map_err(|error| corrupt(error.to_string()))?;
        Ok(Some(Arc::new(key)))
    }

    fn create_key(&self) -> Result<Arc<dyn DeviceKey>, CredentialsError> {
        let key = MemoryKey::generate().map_err(|error| CredentialsError::GenerateKey {
            reason: error.to_string(),
        })?;
        write_private(&self.dir.join(KEY_FILE), key.to_pem().expose().as_bytes())?;
        Ok(Arc::new(key))
    }

    fn artifacts(&self) -> &'static [&'static str] {
        &[SECRET_FILE, KEY_FILE]
    }
}
