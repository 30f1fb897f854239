//! The connection loop: credentials from provisioning, then one MQTT session per set of
//! credentials, until the agent stops.
//!
//! Certificate renewal runs beside the session, which stays up meanwhile: only a renewed
//! certificate ends it (gracefully, nothing lost: unacknowledged stored data is sent again on
//! the next session). A failed renewal keeps the session and tries again later; see
//! `provisioning::certificate` for when.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::health::Health;
use crate::provisioning::{Phase, Provisioner, Ready};
use crate::state::{AgentState, StateTx};
use crate::tls;
use crate::transport::resume::ResumeRecord;
use crate::transport::session::{self, Endpoint, SessionContext, SessionEnd};

/// Delay after the broker refuses the client certificate, growing while it keeps refusing.
const REJECTION_BACKOFF_BASE: Duration = Duration::from_secs(2);
const REJECTION_BACKOFF_MAX: Duration = Duration::from_secs(600);

/// Everything the loop runs on.
pub struct Connection {
    pub provisioner: Provisioner,
    pub context: SessionContext,
    pub roots: Arc<rustls::RootCertStore>,
    pub state: StateTx,
    pub health: Arc<Health>,
}

impl Connection {
    /// Provisions credentials and runs sessions until cancelled.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), String> {
        let state = self.state.clone();
        let report = move |phase: Phase| report_phase(&state, phase);
        let mut rejections = Backoff::new(REJECTION_BACKOFF_BASE, REJECTION_BACKOFF_MAX);
        let mut consecutive_rejections = 0;
        let mut renewed: Option<Ready> = None;
        loop {
            let ready = match renewed.take() {
                Some(ready) => ready,
                None => {
                    self.state.send_replace(AgentState::ObtainingCredentials);
                    match self.provisioner.ensure_credentials(&report, &cancel).await {
                        Ok(ready) => ready,
                        Err(_) if cancel.is_cancelled() => return Ok(()),
                        Err(error) => return Err(format!("provisioning: {error}")),
                    }
                }
            };
            let tls = match tls::mqtt_config(self.roots.clone(), &ready.cert_pem, ready.key.clone())
            {
                Ok(config) => Arc::new(config),
                Err(error) => {
                    tracing::error!(error = %crate::error_chain::error_chain(&error), "the stored client certificate is unusable; requesting a new one");
                    self.provisioner.invalidate_certificate().await;
                    continue;
                }
            };
            self.health.set_credentials(
                format!("{}:{}", ready.broker.host, ready.broker.port),
                ready.cert_info.not_after,
            );
            let endpoint = Endpoint {
                host: ready.broker.host.clone(),
                port: ready.broker.port,
                tls,
                resume: ResumeRecord::in_dir(self.provisioner.store().dir()),
            };
            let (end, next) = self.session_renewing(endpoint, &ready, &cancel).await;
            renewed = next;
            match end {
                SessionEnd::Shutdown if cancel.is_cancelled() => return Ok(()),
                // Renewed credentials replace these.
                SessionEnd::Shutdown => {
                    consecutive_rejections = 0;
                    rejections.reset();
                }
                SessionEnd::Failed => {
                    return Err("the MQTT connection task stopped unexpectedly".into());
                }
                SessionEnd::CertificateRejected { had_connected } => {
                    if had_connected {
                        rejections.reset();
                        consecutive_rejections = 0;
                    }
                    consecutive_rejections += 1;
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        _ = self.provisioner.certificate_rejected(&ready, consecutive_rejections) => {}
                    }
                    // Every new certificate revokes the previous one: never hammer Pairing or
                    // the broker when the broker keeps refusing.
                    let delay = rejections.next_delay();
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Runs a session with `ready`'s credentials while renewing them when due. Returns how
    /// the session ended and, when renewal ended it, the new credentials.
    async fn session_renewing(
        &mut self,
        endpoint: Endpoint,
        ready: &Ready,
        cancel: &CancellationToken,
    ) -> (SessionEnd, Option<Ready>) {
        let stop = cancel.child_token();
        let session = session::run(&self.context, endpoint, &stop);
        tokio::pin!(session);
        let mut renew_at = ready.renew_at;
        loop {
            let renewal = renew(&mut self.provisioner, renew_at, cancel);
            tokio::select! {
                end = &mut session => return (end, None),
                renewed = renewal => match renewed {
                    Some(next) if next.cert_pem != ready.cert_pem => {
                        tracing::info!("reconnecting with the renewed certificate");
                        stop.cancel();
                        let end = session.await;
                        return (end, Some(next));
                    }
                    // Not renewed (Pairing unreachable, or not due yet): keep the session.
                    Some(same) => renew_at = same.renew_at,
                    None => renew_at = SystemTime::now() + Duration::from_secs(60),
                },
            }
        }
    }
}

/// Waits until `at`, then has provisioning renew the certificate (or keep it, when Pairing
/// can't issue one). `None` when cancelled.
async fn renew(
    provisioner: &mut Provisioner,
    at: SystemTime,
    cancel: &CancellationToken,
) -> Option<Ready> {
    let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait).await;
    tracing::info!("the client certificate is due for renewal");
    // The session is up: what provisioning goes through doesn't change the agent state.
    provisioner.ensure_credentials(&|_| {}, cancel).await.ok()
}

fn report_phase(state: &StateTx, phase: Phase) {
    let next = match phase {
        Phase::Registering => AgentState::Registering,
        Phase::ObtainingCredentials => AgentState::ObtainingCredentials,
        Phase::CredentialsMissing { reason } => {
            tracing::error!(%reason, "waiting for credentials");
            AgentState::CredentialsMissing
        }
        Phase::Inhibited => {
            tracing::error!(
                "Pairing refuses to issue credentials to this device (inhibited); an operator must re-enable it in Astarte"
            );
            AgentState::Inhibited
        }
    };
    state.send_replace(next);
}
