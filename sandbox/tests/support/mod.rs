//! Test helpers: a minimal HTTP/1.1 client, CSRs, and an MQTT "device" driven like the agent
//! would drive one.

#![allow(dead_code)]

use std::time::Duration;

use astarte_sandbox::{Identity, Sandbox, client_config};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509, X509NameBuilder, X509Req};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, TlsConfiguration, Transport};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

pub const ID: &str = "V_zv6ThCCtXWveQ8mPjsKg";
pub const OTHER_ID: &str = "AJInS0w3VpWpuOqkXhgZdA";
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// An answer as it came: status line and headers, then the body as text.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// One request over a fresh connection (`Connection: close`), body as JSON.
pub async fn http(method: &str, url: &str, auth: Option<&str>, body: Option<Value>) -> Reply {
    let raw = http_raw(method, url, auth, body).await;
    let body = if raw.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw.body).unwrap()
    };
    Reply {
        status: raw.status,
        body,
    }
}

/// Like [`http`], the answer left as it came.
pub async fn http_raw(
    method: &str,
    url: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> RawReply {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(auth) = auth {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream
        .write_all(format!("{head}\r\n{body}").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    RawReply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Registers `id` with the sandbox's agent token; returns the credentials secret.
pub async fn register(sb: &Sandbox, id: &str) -> String {
    register_at(&sb.pairing_url(), sb.realm(), &sb.agent_token(), id).await
}

/// Registers `id` with `token` at the Pairing URL `pairing_url`; returns the secret.
pub async fn register_at(pairing_url: &str, realm: &str, token: &str, id: &str) -> String {
    let url = format!("{pairing_url}/v1/{realm}/agent/devices");
    let reply = http(
        "POST",
        &url,
        Some(&bearer(token)),
        Some(json!({"data": {"hw_id": id}})),
    )
    .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.body["data"]["credentials_secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn device_url(sb: &Sandbox, id: &str) -> String {
    format!("{}/v1/{}/devices/{id}", sb.pairing_url(), sb.realm())
}

pub fn credentials_url(sb: &Sandbox, id: &str) -> String {
    format!(
        "{}/protocols/astarte_mqtt_v1/credentials",
        device_url(sb, id)
    )
}

pub fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

pub fn csr(key: &PKey<Private>, cn: &str) -> String {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let mut b = X509Req::builder().unwrap();
    b.set_subject_name(&name.build()).unwrap();
    b.set_pubkey(key).unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    String::from_utf8(b.build().to_pem().unwrap()).unwrap()
}

pub fn subject_cn(pem: &str) -> String {
    let cert = X509::from_pem(pem.as_bytes()).unwrap();
    let entry = cert
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .unwrap();
    entry.data().to_string().unwrap()
}

/// Registers `id` and obtains its certificate through Pairing, as the agent would.
pub async fn pair(sb: &Sandbox, id: &str) -> Identity {
    let secret = register(sb, id).await;
    let key = new_key();
    let body = json!({"data": {"csr": csr(&key, "ignored")}});
    let reply = http(
        "POST",
        &credentials_url(sb, id),
        Some(&bearer(&secret)),
        Some(body),
    )
    .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    Identity {
        cert_pem: reply.body["data"]["client_crt"]
            .as_str()
            .unwrap()
            .to_owned(),
        key_pem: String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
    }
}

/// An MQTT 3.1.1 client with a device certificate, its event loop driven by a task.
pub struct Device {
    pub client: AsyncClient,
    events: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    /// Connects as `client_id` and waits for the CONNACK.
    pub async fn connect(sb: &Sandbox, identity: &Identity, client_id: &str, clean: bool) -> Self {
        let tls = client_config(sb.ca_pem(), Some(identity)).unwrap();
        let mut options = MqttOptions::new(client_id, "localhost", sb.broker_port());
        options
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)))
            .set_clean_session(clean)
            .set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let mut device = Self {
            client,
            events,
            task,
        };
        device
            .wait(|e| matches!(e, Event::Incoming(Packet::ConnAck(_))))
            .await;
        device
    }

    /// The next event matching `pred` (others are dropped).
    pub async fn wait(&mut self, pred: impl Fn(&Event) -> bool) -> Event {
        let found = async {
            loop {
                let event = self.events.recv().await.expect("device event loop ended");
                if pred(&event) {
                    return event;
                }
            }
        };
        tokio::time::timeout(WAIT, found)
            .await
            .expect("device event not seen in time")
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}
