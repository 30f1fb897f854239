//! `sandbox.env`: how a running sandbox describes itself to a shell (the demo) and to
//! `astarte-sandbox publish`, which reconnects as the observer from the files in the folder.

use std::path::{Path, PathBuf};

use crate::ca::Identity;
use crate::observer::ObserverConfig;

pub const ENV_FILE: &str = "sandbox.env";
pub const TOKEN_FILE: &str = "agent-token";
pub(crate) const OBSERVER_CERT: &str = "observer.pem";
pub(crate) const OBSERVER_KEY: &str = "observer.key";

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("couldn't read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("couldn't write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has no {key}")]
    Missing { path: PathBuf, key: &'static str },
    #[error("{url} has no port")]
    BrokerUrl { url: String },
}

/// Writes `KEY='value'` lines, quoted for a POSIX shell.
pub(crate) fn write_env(dir: &Path, vars: &[(&str, String)]) -> Result<PathBuf, EnvError> {
    let text: String = vars
        .iter()
        .map(|(key, value)| format!("{key}='{}'\n", value.replace('\'', r"'\''")))
        .collect();
    let path = dir.join(ENV_FILE);
    write(&path, &text)?;
    Ok(path)
}

pub(crate) fn write(path: &Path, contents: &str) -> Result<(), EnvError> {
    std::fs::write(path, contents).map_err(|source| EnvError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The observer of the sandbox running in `dir` (started by `astarte-sandbox up`).
pub fn observer_config_from_dir(dir: &Path) -> Result<ObserverConfig, EnvError> {
    let env_path = dir.join(ENV_FILE);
    let env = read(&env_path)?;
    let get = |key: &'static str| {
        lookup(&env, key).ok_or_else(|| EnvError::Missing {
            path: env_path.clone(),
            key,
        })
    };
    let url = get("SANDBOX_BROKER_URL")?;
    let port = url
        .trim_end_matches('/')
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .ok_or_else(|| EnvError::BrokerUrl { url: url.clone() })?;
    Ok(ObserverConfig {
        host: "localhost".to_owned(),
        port,
        realm: get("SANDBOX_REALM")?,
        ca_pem: read(&PathBuf::from(get("SANDBOX_CA_FILE")?))?,
        identity: Identity {
            cert_pem: read(&dir.join(OBSERVER_CERT))?,
            key_pem: read(&dir.join(OBSERVER_KEY))?,
        },
    })
}

fn read(path: &Path) -> Result<String, EnvError> {
    std::fs::read_to_string(path).map_err(|source| EnvError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The value of `key` in text written by [`write_env`].
fn lookup(env: &str, key: &str) -> Option<String> {
    env.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix('=')?;
        let inner = value.strip_prefix('\'')?.strip_suffix('\'')?;
        Some(inner.replace(r"'\''", "'"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_values_read_back_even_with_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let vars = [("A", "it's".to_owned()), ("AB", "/x y".to_owned())];
        let path = write_env(dir.path(), &vars).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(lookup(&text, "A").as_deref(), Some("it's"));
        assert_eq!(lookup(&text, "AB").as_deref(), Some("/x y"));
        assert_eq!(lookup(&text, "B"), None);
    }
}
