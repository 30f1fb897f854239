use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rstest::rstest;
use serde_json::json;
use url::Url;

use super::*;
use crate::credentials::{CredentialStore, MemoryKey};
use crate::pairing::csr;
use crate::pairing::test_support::{Recorded, Reply, StubServer, TestCa};

const REALM: &str = "test";
const DEVICE: &str = "2TBn-jNESuuHamE2Zo1anA";
const CN: &str = "test/2TBn-jNESuuHamE2Zo1anA";
const TOKEN: &str = "agent.jwt.token";
const ISSUED_SECRET: &str = "TTkd5OgB13X/3qU0LXU7OCxyTXz5QHM2NY1IgidtPOs=";
const DAY: Duration = Duration::from_secs(86_400);

const REGISTER: &str = "POST /v1/test/agent/devices";
const INFO: &str = "GET /v1/test/devices/2TBn-jNESuuHamE2Zo1anA";
const CREDENTIALS: &str =
    "POST /v1/test/devices/2TBn-jNESuuHamE2Zo1anA/protocols/astarte_mqtt_v1/credentials";

/// Pairing as the agent sees it, backed by a test CA.
struct Fake {
    ca: TestCa,
    secret_file: PathBuf,
    status: &'static str,
    register_reply: Option<Reply>,
    info_failures: u32,
    issued_cn: String,
    secret_stored_at_credentials_request: Option<bool>,
}

impl Fake {
    fn handle(&mut self, request: &Recorded) -> Reply {
        let call = format!("{} {}", request.method, request.path);
        if call == REGISTER {
            if request.authorization.as_deref() != Some(&*format!("Bearer {TOKEN}")) {
                return Reply::json(401, json!({"errors": {"detail": "Invalid JWT token"}}));
            }
            return self.register_reply.take().unwrap_or_else(|| {
                Reply::json(201, json!({"data": {"credentials_secret": ISSUED_SECRET}}))
            });
        }
        if request.authorization.as_deref() != Some(&*format!("Bearer {ISSUED_SECRET}")) {
            return Reply::json(403, json!({"errors": {"detail": "Forbidden"}}));
        }
        if call == INFO {
            if self.info_failures > 0 {
                self.info_failures -= 1;
                return Reply::json(503, json!({"errors": {"detail": "Service Unavailable"}}));
            }
            return Reply::json(
                200,
                json!({"data": {"version": "1.3.0", "status": self.status,
                    "protocols": {"astarte_mqtt_v1": {"broker_url": "mqtts://broker.test:8883/"}}}}),
            );
        }
        if call == CREDENTIALS {
            self.secret_stored_at_credentials_request = Some(self.secret_file.exists());
            let csr = request.json()["data"]["csr"].as_str().unwrap().to_owned();
            let now = SystemTime::now();
            let cert = self
                .ca
                .sign_csr(&csr, &self.issued_cn, now - DAY, now + 90 * DAY);
            self.status = "confirmed";
            return Reply::json(201, json!({"data": {"client_crt": cert}}));
        }
        Reply::json(404, json!({"errors": {"detail": "Not Found"}}))
    }
}

struct Rig {
    dir: tempfile::TempDir,
    fake: Arc<Mutex<Fake>>,
    server: StubServer,
}

impl Rig {
    async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(Mutex::new(Fake {
            ca: TestCa::new("pairing ca"),
            secret_file: dir.path().join("credentials/secret"),
            status: "pending",
            register_reply: None,
            info_failures: 0,
            issued_cn: CN.into(),
            secret_stored_at_credentials_request: None,
        }));
        let handler = Arc::clone(&fake);
        let server =
            StubServer::start(move |request| handler.lock().unwrap().handle(request)).await;
        Rig { dir, fake, server }
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("agent-token")
    }

    fn write_token(&self) {
        std::fs::write(self.token_file(), format!("  {TOKEN}\n")).unwrap();
    }

    fn store(&self) -> CredentialStore {
        CredentialStore::open_files(self.dir.path()).unwrap()
    }

    fn provisioner(&self) -> Provisioner {
        provisioner_at(&self.server.url, self.dir.path(), Some(self.token_file()))
    }

    fn store_secret(&self) {
        let secret = CredentialsSecret::parse(ISSUED_SECRET).unwrap();
        self.store().save_secret(&secret).unwrap();
        self.fake.lock().unwrap().status = "confirmed";
    }

    /// Stores a key and a certificate from the fake's CA valid between the two offsets from
    /// now (negative: in the past).
    fn store_certificate(&self, from_secs: i64, to_secs: i64) -> String {
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
            .fake
            .lock()
            .unwrap()
            .ca
            .sign_csr(&csr, CN, at(from_secs), at(to_secs));
        self.store().save_certificate(&cert).unwrap();
        cert
    }
}

fn provisioner_at(url: &Url, dir: &Path, token_file: Option<PathBuf>) -> Provisioner {
    let tls = crate::tls::http_config(Arc::new(rustls::RootCertStore::empty())).unwrap();
    let client = PairingClient::new(
        url.clone(),
        REALM.into(),
        DEVICE.into(),
        tls,
        Duration::from_secs(5),
    )
    .unwrap();
    let quick = || {
        Backoff::with_rng(
            Duration::from_millis(1),
            Duration::from_millis(5),
            fastrand::Rng::with_seed(1),
        )
    };
    Provisioner::new(
        client,
        CredentialStore::open_files(dir).unwrap(),
        Arc::new(Tokens::new(token_file)),
        RecoveryOptions::default(),
    )
    .with_backoff(quick(), quick())
}

/// Records reported phases; cancels when `stop_at` matches one.
struct Reporter {
    phases: Mutex<Vec<Phase>>,
    cancel: CancellationToken,
    stop_at: fn(&Phase) -> bool,
}

impl Reporter {
    fn new(stop_at: fn(&Phase) -> bool) -> Reporter {
        Reporter {
            phases: Mutex::new(Vec::new()),
            cancel: CancellationToken::new(),
            stop_at,
        }
    }

    fn never() -> Reporter {
        Reporter::new(|_| false)
    }

    async fn run(&self, provisioner: &mut Provisioner) -> Result<Ready, ProvisioningError> {
        let report = |phase: Phase| {
            if (self.stop_at)(&phase) {
                self.cancel.cancel();
            }
            self.phases.lock().unwrap().push(phase);
        };
        let run = provisioner.ensure_credentials(&report, &self.cancel);
        // A guard against a hang, not a timing assertion.
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .unwrap()
    }

    fn phases(&self) -> Vec<Phase> {
        self.phases.lock().unwrap().clone()
    }

    fn missing_reason(&self) -> String {
        self.phases()
            .into_iter()
            .find_map(|phase| match phase {
                Phase::CredentialsMissing { reason } => Some(reason),
                _ => None,
            })
            .unwrap()
    }
}

fn is_missing(phase: &Phase) -> bool {
    matches!(phase, Phase::CredentialsMissing { .. })
}

#[tokio::test]
async fn first_start_registers_then_obtains_a_certificate_for_the_device() {
    let rig = Rig::new().await;
    rig.write_token();
    let reporter = Reporter::never();
    let ready = reporter.run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(rig.server.calls(), [REGISTER, INFO, CREDENTIALS]);
    assert_eq!(
        reporter.phases(),
        [Phase::Registering, Phase::ObtainingCredentials]
    );
    assert_eq!(ready.cert_info.common_name, CN);
    assert_eq!(
        ready.broker,
        BrokerUrl {
            host: "broker.test".into(),
            port: 8883
        }
    );
    assert_eq!(ready.secret.expose(), ISSUED_SECRET);
    assert_eq!(
        rig.store().load_certificate().unwrap(),
        Some(ready.cert_pem)
    );
    assert_eq!(
        rig.store().device_key().unwrap().public_key(),
        ready.key.public_key()
    );
}

#[tokio::test]
async fn the_secret_is_persisted_before_the_certificate_is_requested() {
    let rig = Rig::new().await;
    rig.write_token();
    Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    let stored = rig
        .fake
        .lock()
        .unwrap()
        .secret_stored_at_credentials_request;
    assert_eq!(stored, Some(true));
}

#[tokio::test]
async fn a_restart_reuses_the_stored_secret_and_certificate_without_registering() {
    let rig = Rig::new().await;
    rig.write_token();
    let first = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    std::fs::remove_file(rig.token_file()).unwrap();
    let second = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(rig.server.calls(), [REGISTER, INFO, CREDENTIALS, INFO]);
    assert_eq!(second.cert_pem, first.cert_pem);
}

#[rstest]
#[case::fresh_91_day_certificate(-86_400, 90 * 86_400, false)]
#[case::day_certificate_with_an_hour_left(-90 * 86_400, 3_600, true)]
#[case::expired(-90 * 86_400, -60, true)]
#[case::hour_certificate_with_50_minutes_left(-600, 3_000, false)]
#[case::hour_certificate_with_5_minutes_left(-3_300, 300, true)]
#[tokio::test]
async fn a_stored_certificate_is_renewed_only_near_its_expiry(
    #[case] from_secs: i64,
    #[case] to_secs: i64,
    #[case] renewed: bool,
) {
    let rig = Rig::new().await;
    rig.store_secret();
    let old = rig.store_certificate(from_secs, to_secs);
    let ready = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(
        rig.server.calls().contains(&CREDENTIALS.to_owned()),
        renewed
    );
    assert_eq!(ready.cert_pem != old, renewed);
    assert_eq!(
        rig.store().load_certificate().unwrap().unwrap(),
        ready.cert_pem
    );
}

#[tokio::test]
async fn a_stored_certificate_for_another_device_is_replaced() {
    let rig = Rig::new().await;
    rig.store_secret();
    let now = SystemTime::now();
    let csr = csr::certificate_request("test/other", rig.store().device_key().unwrap()).unwrap();
    let cert = rig
        .fake
        .lock()
        .unwrap()
        .ca
        .sign_csr(&csr, "test/other", now - DAY, now + 90 * DAY);
    rig.store().save_certificate(&cert).unwrap();
    let ready = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(ready.cert_info.common_name, CN);
    assert_eq!(rig.server.calls(), [INFO, CREDENTIALS]);
}

#[tokio::test]
async fn a_stored_certificate_that_does_not_match_its_key_is_replaced() {
    let rig = Rig::new().await;
    rig.store_secret();
    let now = SystemTime::now();
    let other = csr::certificate_request(CN, Arc::new(MemoryKey::generate().unwrap())).unwrap();
    let cert = rig
        .fake
        .lock()
        .unwrap()
        .ca
        .sign_csr(&other, CN, now - DAY, now + 90 * DAY);
    rig.store().save_certificate(&cert).unwrap();
    let ready = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    assert_ne!(ready.cert_pem, cert);
}

#[tokio::test]
async fn invalidating_the_certificate_makes_the_next_run_request_a_new_one() {
    let rig = Rig::new().await;
    rig.store_secret();
    let old = rig.store_certificate(-86_400, 90 * 86_400);
    let mut provisioner = rig.provisioner();
    provisioner.invalidate_certificate().await;
    let ready = Reporter::never().run(&mut provisioner).await.unwrap();
    assert_ne!(ready.cert_pem, old);
    assert_eq!(rig.server.calls(), [INFO, CREDENTIALS]);
}

#[tokio::test]
async fn a_missing_token_file_is_reported_as_credentials_missing() {
    let rig = Rig::new().await;
    let reporter = Reporter::new(is_missing);
    let result = reporter.run(&mut rig.provisioner()).await;
    assert!(
        matches!(result, Err(ProvisioningError::Cancelled)),
        "{result:?}"
    );
    assert!(
        reporter.missing_reason().contains("agent-token"),
        "{}",
        reporter.missing_reason()
    );
    assert!(rig.server.calls().is_empty());
}

#[tokio::test]
async fn a_token_file_written_later_is_picked_up() {
    let rig = Rig::new().await;
    std::fs::write(rig.token_file(), "\n").unwrap();
    let token_file = rig.token_file();
    let phases = Mutex::new(Vec::new());
    let report = |phase: Phase| {
        if is_missing(&phase) {
            std::fs::write(&token_file, TOKEN).unwrap();
        }
        phases.lock().unwrap().push(phase);
    };
    let ready = rig
        .provisioner()
        .ensure_credentials(&report, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(ready.cert_info.common_name, CN);
    assert!(is_missing(&phases.lock().unwrap()[0]));
}

#[tokio::test]
async fn with_unregistering_off_an_already_registered_device_explains_how_to_recover() {
    let rig = Rig::new().await;
    rig.write_token();
    rig.fake.lock().unwrap().register_reply = Some(Reply::json(
        422,
        json!({"errors": {"detail": "Device already registered"}}),
    ));
    let reporter = Reporter::new(is_missing);
    let mut provisioner = rig.provisioner();
    provisioner.options.unregister_if_registered = false;
    let result = reporter.run(&mut provisioner).await;
    assert!(
        matches!(result, Err(ProvisioningError::Cancelled)),
        "{result:?}"
    );
    let reason = reporter.missing_reason();
    assert!(
        reason.contains("DELETE /v1/test/agent/devices/2TBn-jNESuuHamE2Zo1anA"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_rejected_stored_secret_without_a_token_is_reported_and_kept() {
    let rig = Rig::new().await;
    let other = CredentialsSecret::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
    rig.store().save_secret(&other).unwrap();
    let reporter = Reporter::new(is_missing);
    let result = reporter.run(&mut rig.provisioner()).await;
    assert!(
        matches!(result, Err(ProvisioningError::Cancelled)),
        "{result:?}"
    );
    let reason = reporter.missing_reason();
    assert!(
        reason.contains("refused the stored credentials secret"),
        "{reason}"
    );
    assert!(reason.contains("agent-token"), "{reason}");
    assert_eq!(rig.store().load_secret().unwrap(), Some(other));
}

#[tokio::test]
async fn an_inhibited_device_is_reported_and_asks_for_no_certificate() {
    let rig = Rig::new().await;
    rig.store_secret();
    rig.fake.lock().unwrap().status = "inhibited";
    let reporter = Reporter::new(|phase| *phase == Phase::Inhibited);
    let result = reporter.run(&mut rig.provisioner()).await;
    assert!(
        matches!(result, Err(ProvisioningError::Cancelled)),
        "{result:?}"
    );
    assert_eq!(rig.server.calls(), [INFO]);
}

#[tokio::test]
async fn server_errors_are_retried_without_operator_phases() {
    let rig = Rig::new().await;
    rig.store_secret();
    rig.fake.lock().unwrap().info_failures = 2;
    let reporter = Reporter::never();
    reporter.run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(rig.server.calls(), [INFO, INFO, INFO, CREDENTIALS]);
    assert_eq!(reporter.phases(), [Phase::ObtainingCredentials]);
}

#[tokio::test]
async fn cancellation_interrupts_a_long_backoff() {
    let rig = Rig::new().await;
    let hour = || Backoff::new(Duration::from_secs(3_600), Duration::from_secs(3_600));
    let mut provisioner = rig.provisioner().with_backoff(hour(), hour());
    let reporter = Reporter::new(is_missing);
    let result = reporter.run(&mut provisioner).await;
    assert!(
        matches!(result, Err(ProvisioningError::Cancelled)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_certificate_issued_for_another_name_is_not_stored() {
    let rig = Rig::new().await;
    rig.store_secret();
    rig.fake.lock().unwrap().issued_cn = "test/someone-else".into();
    let err = rig.provisioner().attempt(&|_| {}).await.unwrap_err();
    assert!(
        matches!(err, ProvisioningError::WrongCommonName { .. }),
        "{err:?}"
    );
    assert!(rig.store().load_certificate().unwrap().is_none());
}

#[test]
fn renewal_is_due_a_day_before_expiry_or_at_the_last_tenth_of_short_lives() {
    let start = UNIX_EPOCH + 1000 * DAY;
    let info = |days: u32| CertificateInfo {
        common_name: CN.into(),
        not_before: start,
        not_after: start + days * DAY,
    };
    assert_eq!(renew_at(&info(91)), start + 90 * DAY);
    assert_eq!(renew_at(&info(5)), start + 5 * DAY - DAY / 2);
}

#[tokio::test]
async fn each_call_reports_its_first_phase_even_if_unchanged() {
    let rig = Rig::new().await;
    rig.store_secret();
    let mut provisioner = rig.provisioner();
    let reporter = Reporter::never();
    reporter.run(&mut provisioner).await.unwrap();
    reporter.run(&mut provisioner).await.unwrap();
    assert_eq!(
        reporter.phases(),
        [Phase::ObtainingCredentials, Phase::ObtainingCredentials]
    );
}

#[test]
fn a_fresh_certificate_inside_the_renewal_window_is_used_and_renewed_halfway() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    // 5 minutes backdated, 30 seconds left: the window (lifetime / 10 = 33 s) is already open.
    let info = CertificateInfo {
        common_name: "test/x".into(),
        not_before: now - Duration::from_secs(300),
        not_after: now + Duration::from_secs(30),
    };
    assert!(renew_at(&info) <= now);
    assert_eq!(renew_fresh_at(&info, now), now + Duration::from_secs(15));
}

#[test]
fn a_fresh_certificate_outside_the_window_keeps_the_normal_renewal_time() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let info = CertificateInfo {
        common_name: "test/x".into(),
        not_before: now,
        not_after: now + Duration::from_secs(91 * 24 * 3600),
    };
    assert_eq!(renew_fresh_at(&info, now), renew_at(&info));
}
