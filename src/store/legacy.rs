//! One-time import of version 0.1's property file (`store_dir/properties`): a BSON document
//! `{"version": 1, "properties": [{"o": "device"|"server", "i": name, "m": major, "p": path,
//! "v": <payload>}]}`. Its values go into the database in one transaction; the file is removed
//! only after that transaction committed, so an interrupted import simply runs again.

use std::path::Path;

use bson::Document;
use rusqlite::{Connection, params};

use super::StoreError;
use super::schema::ownership_code;
use crate::interface::Ownership;

pub const LEGACY_PROPERTIES_FILE: &str = "properties";

pub(super) fn import(dir: &Path, connection: &Connection) -> Result<(), StoreError> {
    let path = dir.join(LEGACY_PROPERTIES_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(StoreError::Import { path, source }),
    };
    let entries = match decode(&bytes) {
        Ok(entries) => entries,
        Err(reason) => {
            let aside = dir.join(format!("{LEGACY_PROPERTIES_FILE}.unreadable"));
            tracing::warn!(path = %path.display(), %reason, moved_to = %aside.display(),
                "the 0.1 property file is unreadable: not imported (Astarte resends server-owned properties; device-owned ones must be set again)");
            return std::fs::rename(&path, &aside)
                .map_err(|source| StoreError::Import { path, source });
        }
    };
    let write = |connection: &Connection| -> Result<(), rusqlite::Error> {
        let transaction = connection.unchecked_transaction()?;
        {
            let mut insert = transaction.prepare(
                "INSERT OR REPLACE INTO properties (interface, path, ownership, major, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for entry in &entries {
                insert.execute(params![
                    entry.interface,
                    entry.path,
                    ownership_code(entry.ownership),
                    entry.major,
                    entry.payload
                ])?;
            }
        }
        transaction.commit()
    };
    write(connection).map_err(StoreError::Write)?;
    crate::fs_atomic::remove_durably(&path).map_err(|error| StoreError::Import {
        path: error.path,
        source: error.source,
    })?;
    tracing::info!(
        properties = entries.len(),
        "imported the 0.1 property file into the store"
    );
    Ok(())
}

struct Entry {
    interface: String,
    path: String,
    ownership: Ownership,
    major: i64,
    payload: Vec<u8>,
}

fn decode(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let document = Document::from_reader(bytes).map_err(|error| error.to_string())?;
    let entries = document
        .get_array("properties")
        .map_err(|error| error.to_string())?;
    let mut decoded = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(entry) = entry.as_document() else {
            continue;
        };
        let text = |name: &str| entry.get_str(name).map(str::to_owned);
        let parsed = (|| {
            Ok::<_, bson::error::Error>(Entry {
                interface: text("i")?,
                path: text("p")?,
                ownership: if entry.get_str("o")? == "device" {
                    Ownership::Device
                } else {
                    Ownership::Server
                },
                major: entry.get_i64("m")?,
                payload: entry.get_binary_generic("v")?.clone(),
            })
        })();
        match parsed {
            Ok(entry) => decoded.push(entry),
            Err(error) => {
                tracing::info!(%error, "skipping a malformed entry of the 0.1 property file")
            }
        }
    }
    Ok(decoded)
}
