//! [`PairingStandIn`]: the Pairing API stand-in alone, with its own CA and realm key and no
//! broker, for unit tests of a Pairing client. [`crate::Sandbox`] runs the same server next to
//! mosquitto.

use std::sync::Arc;
use std::time::Duration;

use crate::ca::{self, TestCa};
use crate::pairing::{App, PairingServer, PairingState};
use crate::sandbox::SandboxError;
use crate::token::RealmKey;

/// CFSSL's default signing expiry in Astarte's deployments (2190h).
pub(crate) const DEFAULT_VALIDITY: Duration = Duration::from_secs(2190 * 3600);
/// How long test tokens from [`PairingStandIn::token_with_claims`] live.
const TEST_TOKEN_SECS: i64 = 3600;
/// What device info reports when there is no broker (`.invalid` never resolves).
pub const STAND_IN_BROKER_URL: &str = "mqtts://broker.invalid:8883/";

#[derive(Debug, Clone)]
pub struct PairingOptions {
    /// Default `test`.
    pub realm: String,
    /// The `broker_url` device info reports; default [`STAND_IN_BROKER_URL`].
    pub broker_url: String,
    /// Serve the API under this path (e.g. `/pairing`, like a deployment behind a reverse
    /// proxy); default `""`, the root. Requests outside it are answered 404.
    pub base_path: String,
    /// Lifetime of device certificates counted from issuance; default 2190h (about 91 days).
    pub certificate_validity: Duration,
    /// How far `notBefore` of device certificates is backdated; default 5 min, like CFSSL.
    pub certificate_backdate: Duration,
}

impl Default for PairingOptions {
    fn default() -> Self {
        Self {
            realm: "test".to_owned(),
            broker_url: STAND_IN_BROKER_URL.to_owned(),
            base_path: String::new(),
            certificate_validity: DEFAULT_VALIDITY,
            certificate_backdate: ca::DEFAULT_BACKDATE,
        }
    }
}

/// A running Pairing API on a free loopback port; dropping it stops the server.
pub struct PairingStandIn {
    realm: String,
    base_path: String,
    ca: Arc<TestCa>,
    ca_pem: String,
    key: Arc<RealmKey>,
    agent_token: String,
    state: Arc<PairingState>,
    server: PairingServer,
}

impl PairingStandIn {
    /// Starts the server with a fresh CA named `Astarte Pairing Stand-in CA`.
    pub async fn start(opts: PairingOptions) -> Result<Self, SandboxError> {
        let ca = TestCa::generate("Astarte Pairing Stand-in CA")?;
        Self::start_with_ca(opts, Arc::new(ca)).await
    }

    /// Starts the server signing device certificates with `ca` (the sandbox's, which also
    /// signs the broker's certificate).
    pub(crate) async fn start_with_ca(
        opts: PairingOptions,
        ca: Arc<TestCa>,
    ) -> Result<Self, SandboxError> {
        check_realm(&opts.realm)?;
        let ca_pem = ca.cert_pem()?;
        let key = Arc::new(RealmKey::generate()?);
        let agent_token = key.sign_agent()?;
        let state = Arc::new(PairingState::default());
        let base_path = match opts.base_path.trim_matches('/') {
            "" => String::new(),
            base => format!("/{base}"),
        };
        let server = PairingServer::start(
            App {
                state: state.clone(),
                realm: opts.realm.clone(),
                broker_url: opts.broker_url,
                ca: ca.clone(),
                key: key.clone(),
                validity: opts.certificate_validity,
                backdate: opts.certificate_backdate,
            },
            &base_path,
        )
        .await?;
        Ok(Self {
            realm: opts.realm,
            base_path,
            ca,
            ca_pem,
            key,
            agent_token,
            state,
            server,
        })
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// `http://127.0.0.1:<port>` followed by the base path, if any: the Pairing URL an agent
    /// is configured with.
    pub fn url(&self) -> String {
        format!("{}{}", self.server.url(), self.base_path)
    }

    /// The CA that signs device certificates.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A valid agent JWT for the realm (`a_pa` `[".*::.*"]`, expiring in about ten years).
    pub fn agent_token(&self) -> String {
        self.agent_token.clone()
    }

    /// A JWT with the given `a_pa` claim, valid for an hour.
    pub fn token_with_claims(&self, a_pa: &[&str]) -> Result<String, SandboxError> {
        Ok(self.key.sign(a_pa, TEST_TOKEN_SECS)?)
    }

    /// A full-access JWT that expired a minute ago.
    pub fn expired_token(&self) -> Result<String, SandboxError> {
        Ok(self.key.sign(&[".*::.*"], -60)?)
    }

    /// The devices, counters, request log and fault injection.
    pub fn state(&self) -> &Arc<PairingState> {
        &self.state
    }
}

pub(crate) fn check_realm(realm: &str) -> Result<(), SandboxError> {
    let realm_re = regex::Regex::new("^[a-z][a-z0-9]{0,47}$").ok();
    if realm_re.is_some_and(|re| re.is_match(realm)) {
        Ok(())
    } else {
        Err(SandboxError::InvalidRealm(realm.to_owned()))
    }
}
