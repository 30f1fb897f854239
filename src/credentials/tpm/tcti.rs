//! TCTI configuration strings (`[credentials] tcti`): checked when the backend is opened and
//! handed to tpm2-tss's TCTI loader in a normalised form.
//!
//! The accepted forms, their defaults and their normalisation are those of tss-esapi 7's
//! `TctiNameConf`, which this backend used before it called tpm2-tss directly:
//!
//! - `device[:PATH]`, default `/dev/tpm0`;
//! - `mssim[:OPTIONS]` and `swtpm[:OPTIONS]` with `host=` (an IP address or a DNS host name,
//!   default `localhost`) and `port=` (default 2321) among comma-separated options;
//! - `tabrmd[:OPTIONS]` with `bus_name=` (a D-Bus name, default `com.intel.tss2.Tabrmd`) and
//!   `bus_type=` (`system`, the default, or `session`).
//!
//! Unknown options are ignored; the first of a repeated option counts.

use std::ffi::CString;
use std::net::IpAddr;

const DEFAULT_DEVICE: &str = "/dev/tpm0";
const DEFAULT_HOST: &str = "localhost";
const DEFAULT_PORT: u16 = 2321;
const DEFAULT_BUS_NAME: &str = "com.intel.tss2.Tabrmd";

/// A valid TCTI configuration, as the TCTI loader takes it (`name:conf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tcti(CString);

impl Tcti {
    /// `None` if `config` is not one of the forms in the module documentation.
    pub(super) fn parse(config: &str) -> Option<Tcti> {
        // The forms are whole lines: no line break anywhere.
        if config.contains('\n') {
            return None;
        }
        let (name, options) = config.split_once(':').unwrap_or((config, ""));
        let normalised = match name {
            "device" => {
                let path = if options.is_empty() {
                    DEFAULT_DEVICE
                } else {
                    options
                };
                format!("device:{path}")
            }
            "mssim" | "swtpm" => {
                let host = option(options, "host").unwrap_or(DEFAULT_HOST);
                let host = match host.parse::<IpAddr>() {
                    Ok(ip) => ip.to_string(),
                    Err(_) if is_host_name(host) => host.to_owned(),
                    Err(_) => return None,
                };
                let port = match option(options, "port") {
                    Some(port) => port.parse::<u16>().ok()?,
                    None => DEFAULT_PORT,
                };
                format!("{name}:host={host},port={port}")
            }
            "tabrmd" => {
                let bus_name = option(options, "bus_name").unwrap_or(DEFAULT_BUS_NAME);
                if !is_bus_name(bus_name) {
                    return None;
                }
                let bus_type = match option(options, "bus_type") {
                    None | Some("system") => "system",
                    Some("session") => "session",
                    Some(_) => return None,
                };
                format!("tabrmd:bus_name={bus_name},bus_type={bus_type}")
            }
            _ => return None,
        };
        CString::new(normalised).ok().map(Tcti)
    }

    pub(super) fn as_c_str(&self) -> &std::ffi::CStr {
        &self.0
    }
}

impl std::fmt::Display for Tcti {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.to_string_lossy())
    }
}

/// The value of the first `key=value` among comma-separated `options`.
fn option<'a>(options: &'a str, key: &str) -> Option<&'a str> {
    options.split(',').find_map(|option| {
        option
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

/// A DNS host name: dot-separated labels of 1 to 63 letters, digits and hyphens, not starting
/// or ending with a hyphen, 253 characters at most.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
}

/// A D-Bus well-known name as tss-esapi checked it: at least two dot-separated elements of
/// letters, digits, `-` and `_`.
fn is_bus_name(name: &str) -> bool {
    let mut elements = 0;
    for element in name.split('.') {
        if element.is_empty()
            || !element
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        {
            return false;
        }
        elements += 1;
    }
    elements >= 2
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("device:/dev/tpmrm0", "device:/dev/tpmrm0")]
    #[case("device", "device:/dev/tpm0")]
    #[case("device:", "device:/dev/tpm0")]
    #[case("swtpm:host=127.0.0.1,port=2321", "swtpm:host=127.0.0.1,port=2321")]
    #[case("swtpm:port=1234,host=168.0.0.1", "swtpm:host=168.0.0.1,port=1234")]
    #[case("swtpm", "swtpm:host=localhost,port=2321")]
    #[case(
        "mssim:host=tpm.example,random=value",
        "mssim:host=tpm.example,port=2321"
    )]
    #[case("mssim:host=::1", "mssim:host=::1,port=2321")]
    #[case("swtpm:xhost=a,host=b", "swtpm:host=b,port=2321")]
    #[case(
        "swtpm:host=1234.1234.12445.111",
        "swtpm:host=1234.1234.12445.111,port=2321"
    )]
    #[case("tabrmd", "tabrmd:bus_name=com.intel.tss2.Tabrmd,bus_type=system")]
    #[case(
        "tabrmd:bus_type=session,bus_name=one.true.bus.Name",
        "tabrmd:bus_name=one.true.bus.Name,bus_type=session"
    )]
    fn valid_configurations_are_normalised(#[case] config: &str, #[case] normalised: &str) {
        assert_eq!(Tcti::parse(config).unwrap().to_string(), normalised);
    }

    #[rstest]
    #[case("")]
    #[case("tpm0")]
    #[case("devices:/dev/tpm0")]
    #[case("swtpm:host=127.0.0.1,port=99999")]
    #[case("swtpm:port=abdef")]
    #[case("swtpm:port=")]
    #[case("swtpm:host=")]
    #[case("swtpm:host=bad host!,port=2321")]
    #[case("swtpm:host=-timey-wimey")]
    #[case("swtpm:host=abc@def")]
    #[case("tabrmd:bus_name=adfsdgdfg4gf4")]
    #[case("tabrmd:bus_name=abc&.bcd")]
    #[case("tabrmd:bus_type=randooom")]
    #[case("device:/dev/tpm0\n")]
    #[case("device:/dev/\0tpm0")]
    fn invalid_configurations_are_refused(#[case] config: &str) {
        assert_eq!(Tcti::parse(config), None);
    }
}
