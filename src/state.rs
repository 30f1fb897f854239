//! The agent's lifecycle state, published on D-Bus (`State`) and to systemd (`STATUS=`).

use std::fmt;

/// Names are part of the D-Bus API (documented in docs/dbus-api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// Loading configuration and interfaces.
    Starting,
    /// Registering the device with the Pairing API (agent token).
    Registering,
    /// Obtaining the broker URL and the client certificate.
    ObtainingCredentials,
    /// Connecting to the broker or running the session handshake.
    Connecting,
    /// Session established: data flows.
    Connected,
    /// Connection lost; reconnecting with backoff. Data is queued per its retention.
    Disconnected,
    /// No credentials secret and no usable pairing token: waiting for one.
    CredentialsMissing,
    /// Pairing refuses to issue credentials to this device.
    Inhibited,
}

impl AgentState {
    pub const ALL: [AgentState; 8] = [
        AgentState::Starting,
        AgentState::Registering,
        AgentState::ObtainingCredentials,
        AgentState::Connecting,
        AgentState::Connected,
        AgentState::Disconnected,
        AgentState::CredentialsMissing,
        AgentState::Inhibited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Starting => "starting",
            AgentState::Registering => "registering",
            AgentState::ObtainingCredentials => "obtaining-credentials",
            AgentState::Connecting => "connecting",
            AgentState::Connected => "connected",
            AgentState::Disconnected => "disconnected",
            AgentState::CredentialsMissing => "credentials-missing",
            AgentState::Inhibited => "inhibited",
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sender side of the state, shared by the tasks that change it.
pub type StateTx = tokio::sync::watch::Sender<AgentState>;
/// Receiver side, for the D-Bus face and the systemd reporter.
pub type StateRx = tokio::sync::watch::Receiver<AgentState>;
