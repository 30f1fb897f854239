//! A provisioner wired to the sandbox's Pairing stand-in, a credentials folder and a token
//! file, and a reporter of the phases it goes through.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use astarte_sandbox::{PairingOptions, PairingStandIn, PairingState};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::backoff::Backoff;
use crate::credentials::{CredentialStore, CredentialsSecret};
use crate::pairing::{PairingClient, csr};
use crate::provisioning::{Phase, Provisioner, ProvisioningError, Ready, RecoveryOptions, Tokens};

pub(super) const DEVICE: &str = "2TBn-jNESuuHamE2Zo1anA";
pub(super) const CN: &str = "test/2TBn-jNESuuHamE2Zo1anA";
pub(super) const DAY: Duration = Duration::from_secs(86_400);
pub(super) const BROKER_URL: &str = "mqtts://broker.test:8883/";

pub(super) const REGISTER: &str = "POST /v1/test/agent/devices";
pub(super) const UNREGISTER: &str = "DELETE /v1/test/agent/devices/2TBn-jNESuuHamE2Zo1anA";
pub(super) const INFO: &str = "GET /v1/test/devices/2TBn-jNESuuHamE2Zo1anA";
pub(super) const CREDENTIALS: &str =
    "POST /v1/test/devices/2TBn-jNESuuHamE2Zo1anA/protocols/astarte_mqtt_v1/credentials";

/// A guard against a hang, not a timing assertion.
pub(super) const HANG_GUARD: Duration = Duration::from_secs(60);

pub(super) struct Rig {
    pub(super) dir: tempfile::TempDir,
    pub(super) pairing: PairingStandIn,
    /// Shared by every provisioner of the rig, as the agent shares them with D-Bus.
    pub(super) tokens: Arc<Tokens>,
}

impl Rig {
    pub(super) async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let opts = PairingOptions {
            broker_url: BROKER_URL.into(),
            ..PairingOptions::default()
        };
        let pairing = PairingStandIn::start(opts).await.unwrap();
        let tokens = Arc::new(Tokens::new(Some(dir.path().join("agent-token"))));
        Rig {
            dir,
            pairing,
            tokens,
        }
    }

    pub(super) fn state(&self) -> &PairingState {
        self.pairing.state()
    }

    pub(super) fn token_file(&self) -> PathBuf {
        self.dir.path().join("agent-token")
    }

    /// Writes the realm's full-access agent token, padded as an editor might leave it.
    pub(super) fn write_token(&self) {
        self.write_token_value(&self.pairing.agent_token());
    }

    pub(super) fn write_token_value(&self, token: &str) {
        std::fs::write(self.token_file(), format!("  {token}\n")).unwrap();
    }

    pub(super) fn store(&self) -> CredentialStore {
        CredentialStore::open_files(self.dir.path()).unwrap()
    }

    pub(super) fn provisioner(&self) -> Provisioner {
        let tls = crate::tls::http_config(Arc::new(rustls::RootCertStore::empty())).unwrap();
        let client = PairingClient::new(
            Url::parse(&self.pairing.url()).unwrap(),
            self.pairing.realm().into(),
            DEVICE.into(),
            tls,
            Duration::from_secs(5),
        )
        .unwrap();
        Provisioner::new(
            client,
            self.store(),
            self.tokens.clone(),
            RecoveryOptions::default(),
        )
        .with_backoff(quick(), quick())
    }

    /// The device registered out of band, and its secret stored.
    pub(super) fn store_secret(&self) -> CredentialsSecret {
        let secret = self.state().register(DEVICE).unwrap();
        let secret = CredentialsSecret::parse(&secret).unwrap();
        self.store().save_secret(&secret).unwrap();
        secret
    }

    /// Stores a key and a certificate from the stand-in's CA valid between the two offsets
    /// from now (negative: in the past).
    pub(super) fn store_certificate(&self, from_secs: i64, to_secs: i64) -> String {
        let at = |secs: i64| {
            let now = SystemTime::now();
            if secs >= 0 {
                now + Duration::from_secs(secs as u64)
            } else {
                now - Duration::from_secs(secs.unsigned_abs())
            }
        };
        let key = self.store().device_key().unwrap();
        let csr = csr::certificate_request(CN, key).unwrap();
        let cert = self
            .pairing
            .ca()
            .sign_csr_between(&csr, CN, at(from_secs), at(to_secs))
            .unwrap();
        self.store().save_certificate(&cert).unwrap();
        cert
    }

    /// A first start with the token in the file: registered, confirmed (it has a
    /// certificate), everything stored.
    pub(super) async fn provisioned(&self) -> Ready {
        self.write_token();
        Reporter::never()
            .run(&mut self.provisioner())
            .await
            .unwrap()
    }

    /// `METHOD path` of every request the stand-in answered, in order.
    pub(super) fn calls(&self) -> Vec<String> {
        self.answered().into_iter().map(|(call, _)| call).collect()
    }

    /// `(METHOD path, status)` of every request the stand-in answered, in order.
    pub(super) fn answered(&self) -> Vec<(String, u16)> {
        let requests = self.state().requests().into_iter();
        requests
            .map(|r| (format!("{} {}", r.method, r.path), r.status))
            .collect()
    }

    /// Like [`Rig::answered`], without the first `skip` requests.
    pub(super) fn answered_since(&self, skip: usize) -> Vec<(String, u16)> {
        self.answered().into_iter().skip(skip).collect()
    }
}

/// Retries within milliseconds (1 to 5 ms).
pub(super) fn quick() -> Backoff {
    Backoff::with_rng(
        Duration::from_millis(1),
        Duration::from_millis(5),
        fastrand::Rng::with_seed(1),
    )
}

/// `(call, status)` pairs, for comparing with [`Rig::answered`].
pub(super) fn answers(expected: &[(&str, u16)]) -> Vec<(String, u16)> {
    let pairs = expected.iter();
    pairs
        .map(|(call, status)| ((*call).to_owned(), *status))
        .collect()
}

/// Records reported phases; cancels when `stop_at` matches one.
pub(super) struct Reporter {
    phases: Mutex<Vec<Phase>>,
    cancel: CancellationToken,
    stop_at: fn(&Phase) -> bool,
}

impl Reporter {
    pub(super) fn new(stop_at: fn(&Phase) -> bool) -> Reporter {
        Reporter {
            phases: Mutex::new(Vec::new()),
            cancel: CancellationToken::new(),
            stop_at,
        }
    }

    pub(super) fn never() -> Reporter {
        Reporter::new(|_| false)
    }

    pub(super) async fn run(
        &self,
        provisioner: &mut Provisioner,
    ) -> Result<Ready, ProvisioningError> {
        let report = |phase: Phase| {
            if (self.stop_at)(&phase) {
                self.cancel.cancel();
            }
            self.phases.lock().unwrap().push(phase);
        };
        let run = provisioner.ensure_credentials(&report, &self.cancel);
        tokio::time::timeout(HANG_GUARD, run).await.unwrap()
    }

    pub(super) fn phases(&self) -> Vec<Phase> {
        self.phases.lock().unwrap().clone()
    }

    pub(super) fn missing_reason(&self) -> String {
        self.phases()
            .into_iter()
            .find_map(|phase| match phase {
                Phase::CredentialsMissing { reason } => Some(reason),
                _ => None,
            })
            .unwrap()
    }
}

pub(super) fn is_missing(phase: &Phase) -> bool {
    matches!(phase, Phase::CredentialsMissing { .. })
}

/// A provisioner running in its own task, as the agent runs it, until it is ready.
pub(super) struct Running {
    pub(super) phases: mpsc::UnboundedReceiver<Phase>,
    pub(super) task: JoinHandle<Result<Ready, ProvisioningError>>,
}

impl Running {
    pub(super) fn spawn(mut provisioner: Provisioner) -> Running {
        let (tx, phases) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let report = move |phase: Phase| {
                let _ = tx.send(phase);
            };
            let never = CancellationToken::new();
            provisioner.ensure_credentials(&report, &never).await
        });
        Running { phases, task }
    }

    /// The reason of the next `CredentialsMissing` reported.
    pub(super) async fn credentials_missing(&mut self) -> String {
        let next = async {
            loop {
                match self.phases.recv().await {
                    Some(Phase::CredentialsMissing { reason }) => return reason,
                    Some(_) => {}
                    None => panic!("provisioning ended without reporting CredentialsMissing"),
                }
            }
        };
        tokio::time::timeout(HANG_GUARD, next).await.unwrap()
    }

    pub(super) async fn ready(&mut self) -> Ready {
        let result = tokio::time::timeout(HANG_GUARD, &mut self.task)
            .await
            .unwrap();
        result.unwrap().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}
