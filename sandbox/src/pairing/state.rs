//! What the Pairing stand-in knows about devices, what it was asked, and the faults a test wants
//! it to inject. Shared between the server and the test through an `Arc`; the lock is never held
//! across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A device's pairing status, as `GET /devices/{id}` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Pending,
    Confirmed,
    Inhibited,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Inhibited => "inhibited",
        }
    }
}

/// One request the server answered (including injected failures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// Which endpoint a per-device counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Register,
    Info,
    Credentials,
    Verify,
}

#[derive(Debug, Default, Clone)]
struct Device {
    secret: Option<String>,
    confirmed: bool,
    inhibited: bool,
    initial_introspection: Option<serde_json::Value>,
    issued: Vec<String>,
}

impl Device {
    fn status(&self) -> DeviceStatus {
        if self.inhibited {
            DeviceStatus::Inhibited
        } else if self.confirmed {
            DeviceStatus::Confirmed
        } else {
            DeviceStatus::Pending
        }
    }
}

/// A verbatim answer injected with [`PairingState::answer_next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawAnswer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    devices: HashMap<String, Device>,
    counters: HashMap<(Endpoint, String), u32>,
    fault: Option<(u32, u16)>,
    raw: Option<RawAnswer>,
    requests: Vec<RequestRecord>,
    broker_url: Option<String>,
    issued_cn: Option<String>,
    validity: Option<Duration>,
}

type RequestHook = Arc<dyn Fn(&RequestRecord) + Send + Sync>;

/// Outcome of checking a device's secret.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Granted(DeviceStatus),
    NotFound,
    Forbidden,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("couldn't draw a random secret")]
    Random(#[source] openssl::error::ErrorStack),
    #[error("device {0} is not known")]
    UnknownDevice(String),
    #[error("device {0} already asked for credentials")]
    AlreadyRegistered(String),
}

/// The Pairing stand-in's device table, counters and fault injection.
#[derive(Default)]
pub struct PairingState {
    inner: Mutex<Inner>,
    // Apart from `inner`: the hook may call back into the state.
    hook: Mutex<Option<RequestHook>>,
}

impl PairingState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock must not hide the state from the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes device info answer with another `broker_url` (e.g. a TLS probe); `None` restores
    /// the sandbox's own broker.
    pub fn set_broker_url(&self, url: Option<String>) {
        self.lock().broker_url = url;
    }

    /// The overriding broker URL, if any.
    pub(crate) fn broker_url(&self) -> Option<String> {
        self.lock().broker_url.clone()
    }

    /// Registers `id` directly (as if an agent had done it out of band); returns its new secret.
    /// Like the real registration, it also works on a confirmed device.
    pub fn register(&self, id: &str) -> Result<String, StateError> {
        let secret = new_secret()?;
        let mut inner = self.lock();
        let device = inner.devices.entry(id.to_owned()).or_default();
        device.secret = Some(secret.clone());
        device.inhibited = false;
        device.initial_introspection = None;
        Ok(secret)
    }

    pub fn status(&self, id: &str) -> Option<DeviceStatus> {
        self.lock().devices.get(id).map(Device::status)
    }

    pub fn secret(&self, id: &str) -> Option<String> {
        self.lock().devices.get(id).and_then(|d| d.secret.clone())
    }

    /// The `initial_introspection` of the last registration, if it had one.
    pub fn initial_introspection(&self, id: &str) -> Option<serde_json::Value> {
        let inner = self.lock();
        inner
            .devices
            .get(id)
            .and_then(|d| d.initial_introspection.clone())
    }

    /// `POST agent/devices` requests naming `id` that reached the handler.
    pub fn registrations(&self, id: &str) -> u32 {
        self.count(Endpoint::Register, id)
    }

    /// `POST .../credentials` requests for `id` that reached the handler.
    pub fn certificate_requests(&self, id: &str) -> u32 {
        self.count(Endpoint::Credentials, id)
    }

    /// `GET devices/{id}` requests that reached the handler.
    pub fn info_requests(&self, id: &str) -> u32 {
        self.count(Endpoint::Info, id)
    }

    /// `POST .../credentials/verify` requests for `id` that reached the handler.
    pub fn verify_requests(&self, id: &str) -> u32 {
        self.count(Endpoint::Verify, id)
    }

    /// Every certificate issued to `id`, oldest first.
    pub fn issued_certificates(&self, id: &str) -> Vec<String> {
        let inner = self.lock();
        inner
            .devices
            .get(id)
            .map(|d| d.issued.clone())
            .unwrap_or_default()
    }

    /// Every request answered so far, in order, with its status.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// The next `n` requests, to any endpoint, are answered with `status` and an Astarte-like
    /// error body without reaching their handler (so they are not counted per device).
    pub fn fail_next(&self, n: u32, status: u16) {
        self.lock().fault = (n > 0).then_some((n, status));
    }

    /// The next request, to any endpoint, is answered with exactly `status`, a
    /// `Content-Type: <content_type>` header and `body`, without reaching its handler: what a
    /// proxy's error page, a truncated or oversized answer or a misbehaving server sends. It
    /// goes before a [`PairingState::fail_next`] fault and is recorded like one.
    pub fn answer_next(&self, status: u16, content_type: &str, body: impl Into<Vec<u8>>) {
        self.lock().raw = Some(RawAnswer {
            status,
            content_type: content_type.to_owned(),
            body: body.into(),
        });
    }

    /// Certificates are issued for `CN=<cn>` instead of `<realm>/<device id>`, like a
    /// misconfigured Pairing; `None` restores the right name.
    pub fn set_issued_cn(&self, cn: Option<String>) {
        self.lock().issued_cn = cn;
    }

    /// Calls `hook` with every request as it is answered, before the client has the answer
    /// (and before [`PairingState::requests`] lists it): a test looks at the client's side at
    /// that moment, e.g. whether it already stored what an earlier answer gave it. The hook
    /// may call this state. Replaces any earlier hook.
    pub fn on_request(&self, hook: impl Fn(&RequestRecord) + Send + Sync + 'static) {
        *self.hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    pub fn set_inhibited(&self, id: &str, inhibited: bool) {
        if let Some(device) = self.lock().devices.get_mut(id) {
            device.inhibited = inhibited;
        }
    }

    /// What `DELETE agent/devices/{id}` does: clears the secret and the confirmed flag.
    /// Returns whether the device existed.
    pub fn unregister(&self, id: &str) -> bool {
        match self.lock().devices.get_mut(id) {
            Some(device) => {
                device.secret = None;
                device.confirmed = false;
                true
            }
            None => false,
        }
    }

    /// The device's secret stops working (every device endpoint answers 403).
    pub fn forget_secret(&self, id: &str) {
        if let Some(device) = self.lock().devices.get_mut(id) {
            device.secret = None;
        }
    }

    /// Gives the device a new secret the agent does not know; returns it.
    pub fn replace_secret(&self, id: &str) -> Result<String, StateError> {
        let secret = new_secret()?;
        let mut inner = self.lock();
        let device = inner
            .devices
            .get_mut(id)
            .ok_or_else(|| StateError::UnknownDevice(id.to_owned()))?;
        device.secret = Some(secret.clone());
        Ok(secret)
    }

    fn count(&self, endpoint: Endpoint, id: &str) -> u32 {
        let inner = self.lock();
        let key = (endpoint, id.to_owned());
        inner.counters.get(&key).copied().unwrap_or(0)
    }

    pub(crate) fn bump(&self, endpoint: Endpoint, id: &str) {
        *self
            .lock()
            .counters
            .entry((endpoint, id.to_owned()))
            .or_insert(0) += 1;
    }

    pub(crate) fn take_raw_answer(&self) -> Option<RawAnswer> {
        self.lock().raw.take()
    }

    /// Certificates issued from now on live `validity` instead of the sandbox's configured
    /// lifetime (e.g. a few seconds, to force renewals of a running agent); `None` restores it.
    pub fn set_certificate_validity(&self, validity: Option<Duration>) {
        self.lock().validity = validity;
    }

    pub(crate) fn certificate_validity(&self) -> Option<Duration> {
        self.lock().validity
    }

    pub(crate) fn issued_cn(&self) -> Option<String> {
        self.lock().issued_cn.clone()
    }

    pub(crate) fn take_fault(&self) -> Option<u16> {
        let mut inner = self.lock();
        let (left, status) = inner.fault?;
        inner.fault = (left > 1).then_some((left - 1, status));
        Some(status)
    }

    /// Runs the [`PairingState::on_request`] hook (outside every lock), then records.
    pub(crate) fn log_request(&self, record: RequestRecord) {
        let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(hook) = hook {
            hook(&record);
        }
        self.lock().requests.push(record);
    }

    /// Agent registration: a new secret unless the device is confirmed.
    pub(crate) fn register_by_agent(
        &self,
        id: &str,
        introspection: Option<serde_json::Value>,
    ) -> Result<String, StateError> {
        let secret = new_secret()?;
        let mut inner = self.lock();
        let device = inner.devices.entry(id.to_owned()).or_default();
        if device.confirmed {
            return Err(StateError::AlreadyRegistered(id.to_owned()));
        }
        device.secret = Some(secret.clone());
        device.inhibited = false;
        device.initial_introspection = introspection;
        Ok(secret)
    }

    pub(crate) fn access(&self, id: &str, secret: &str) -> Access {
        match self.lock().devices.get(id) {
            None => Access::NotFound,
            Some(d) if d.secret.as_deref() == Some(secret) => Access::Granted(d.status()),
            Some(_) => Access::Forbidden,
        }
    }

    pub(crate) fn record_certificate(&self, id: &str, pem: String) {
        if let Some(device) = self.lock().devices.get_mut(id) {
            device.confirmed = true;
            device.issued.push(pem);
        }
    }
}

/// 32 random bytes, standard base64 with padding: 44 characters, like Pairing's.
fn new_secret() -> Result<String, StateError> {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes).map_err(StateError::Random)?;
    Ok(STANDARD.encode(bytes))
}
