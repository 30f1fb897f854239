//! What the Pairing API answers, as the agent uses it, and the JSON shapes on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

/// The device's registration state as Pairing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Registered, has never requested a certificate.
    Pending,
    /// Has requested a certificate at least once.
    Confirmed,
    /// An operator blocked certificate requests.
    Inhibited,
    /// A status this agent doesn't know (newer server).
    Other(String),
}

impl DeviceStatus {
    fn from_wire(status: String) -> Self {
        match status.as_str() {
            "pending" => DeviceStatus::Pending,
            "confirmed" => DeviceStatus::Confirmed,
            "inhibited" => DeviceStatus::Inhibited,
            _ => DeviceStatus::Other(status),
        }
    }
}

/// Where the MQTT broker listens (always TLS, whatever the scheme said).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address; an IPv6 address is without brackets.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A `broker_url` the agent can't connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable broker URL {url:?}: {reason}")]
pub struct InvalidBrokerUrl {
    pub url: String,
    pub reason: String,
}

impl BrokerUrl {
    /// Parses the `broker_url` of the device info loosely: `mqtts://h:p/`, `mqtts://h:p`,
    /// `ssl://h:p` and the like. The scheme and any path are ignored; the port is required
    /// (except that `https`/`http` imply theirs).
    pub fn parse(text: &str) -> Result<Self, InvalidBrokerUrl> {
        let invalid = |reason: String| InvalidBrokerUrl {
            url: text.to_owned(),
            reason,
        };
        let url = Url::parse(text.trim()).map_err(|err| invalid(err.to_string()))?;
        let host = match url.host() {
            Some(Host::Domain(domain)) if !domain.is_empty() => domain.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(invalid("no host".into())),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("no port".into()))?;
        Ok(BrokerUrl { host, port })
    }
}

/// Device info (`GET devices/<id>`), the parts the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub status: DeviceStatus,
    pub broker_url: BrokerUrl,
}

impl DeviceInfo {
    pub(crate) fn from_wire(wire: WireDeviceInfo) -> Result<Self, InvalidBrokerUrl> {
        Ok(DeviceInfo {
            status: DeviceStatus::from_wire(wire.status),
            broker_url: BrokerUrl::parse(&wire.protocols.astarte_mqtt_v1.broker_url)?,
        })
    }
}

/// Every body, both ways, is wrapped in `{"data": …}`.
#[derive(Serialize, Deserialize)]
pub(crate) struct Data<T> {
    pub(crate) data: T,
}

#[derive(Serialize)]
pub(crate) struct RegisterRequest<'a> {
    pub(crate) hw_id: &'a str,
}

#[derive(Deserialize)]
pub(crate) struct RegisterResponse {
    pub(crate) credentials_secret: String,
}

#[derive(Deserialize)]
pub(crate) struct WireDeviceInfo {
    status: String,
    protocols: WireProtocols,
}

#[derive(Deserialize)]
struct WireProtocols {
    astarte_mqtt_v1: WireMqttV1,
}

#[derive(Deserialize)]
struct WireMqttV1 {
    broker_url: String,
}

#[derive(Serialize)]
pub(crate) struct CsrRequest<'a> {
    pub(crate) csr: &'a str,
}

#[derive(Serialize)]
pub(crate) struct VerifyRequest<'a> {
    pub(crate) client_crt: &'a str,
}

#[derive(Deserialize)]
pub(crate) struct CertificateResponse {
    pub(crate) client_crt: String,
}

/// Only `valid`: `timestamp`/`until` are strings although the OpenAPI schema says integers.
#[derive(Deserialize)]
pub(crate) struct VerifyResponse {
    pub(crate) valid: bool,
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::mqtts_with_slash("mqtts://broker.example.com:8883/", "broker.example.com", 8883)]
    #[case::mqtts_without_slash("mqtts://broker.example.com:8883", "broker.example.com", 8883)]
    #[case::ssl("ssl://broker.example.com:1883", "broker.example.com", 1883)]
    #[case::with_path(
        "mqtts://broker.example.com:8883/some/path",
        "broker.example.com",
        8883
    )]
    #[case::ipv4("mqtts://127.0.0.1:8883/", "127.0.0.1", 8883)]
    #[case::ipv6("mqtts://[::1]:8883/", "::1", 8883)]
    #[case::surrounding_space(" mqtts://b:1 ", "b", 1)]
    fn broker_urls_are_parsed_loosely(#[case] text: &str, #[case] host: &str, #[case] port: u16) {
        let url = BrokerUrl::parse(text).unwrap();
        assert_eq!(
            url,
            BrokerUrl {
                host: host.into(),
                port
            }
        );
    }

    #[rstest]
    #[case::no_port("mqtts://broker.example.com/")]
    #[case::no_scheme("broker.example.com:8883")]
    #[case::no_host("mqtts://:8883/")]
    #[case::empty("")]
    #[case::port_out_of_range("mqtts://b:70000")]
    fn unusable_broker_urls_are_rejected(#[case] text: &str) {
        assert!(BrokerUrl::parse(text).is_err(), "{text:?} accepted");
    }

    #[test]
    fn an_ipv6_broker_displays_with_brackets() {
        let url = BrokerUrl::parse("mqtts://[::1]:8883").unwrap();
        assert_eq!(url.to_string(), "[::1]:8883");
    }

    #[rstest]
    #[case("pending", DeviceStatus::Pending)]
    #[case("confirmed", DeviceStatus::Confirmed)]
    #[case("inhibited", DeviceStatus::Inhibited)]
    #[case("deleting", DeviceStatus::Other("deleting".into()))]
    fn device_status_is_decoded(#[case] wire: &str, #[case] expected: DeviceStatus) {
        assert_eq!(DeviceStatus::from_wire(wire.into()), expected);
    }
}
