//! Provisioning against the sandbox's Pairing stand-in (`rig.rs`); recovery of lost or
//! refused credentials is in `recovery.rs`.

mod recovery;
mod rig;

use std::sync::{Arc, Mutex};

use rstest::rstest;

use super::*;
use crate::credentials::MemoryKey;
use crate::pairing::csr;
use rig::{CN, CREDENTIALS, DAY, INFO, REGISTER, Reporter, Rig, answers, is_missing};

#[tokio::test]
async fn first_start_registers_then_obtains_a_certificate_for_the_device() {
    let rig = Rig::new().await;
    rig.write_token();
    let reporter = Reporter::never();
    let ready = reporter.run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(rig.calls(), [REGISTER, INFO, CREDENTIALS]);
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
    assert_eq!(
        rig.state().secret(rig::DEVICE).as_deref(),
        Some(ready.secret.expose())
    );
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
    let secret_file = rig.store().secret_path();
    let stored = Arc::new(Mutex::new(None));
    rig.state().on_request({
        let stored = stored.clone();
        move |request| {
            if request.method == "POST" && request.path.ends_with("/credentials") {
                *stored.lock().unwrap() = Some(secret_file.exists());
            }
        }
    });
    Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(*stored.lock().unwrap(), Some(true));
}

#[tokio::test]
async fn a_restart_reuses_the_stored_secret_and_certificate_without_registering() {
    let rig = Rig::new().await;
    rig.write_token();
    let first = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    std::fs::remove_file(rig.token_file()).unwrap();
    let second = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(rig.calls(), [REGISTER, INFO, CREDENTIALS, INFO]);
    assert_eq!(second.cert_pem, first.cert_pem);
}

#[tokio::test]
async fn a_restart_while_pairing_is_unavailable_uses_the_broker_it_named_last_time() {
    let rig = Rig::new().await;
    rig.write_token();
    let first = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    // Every request fails from now on: only the stored broker lets the device connect.
    rig.state().fail_next(u32::MAX, 503);
    let second = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(second.broker, first.broker);
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
    assert_eq!(rig.calls().contains(&CREDENTIALS.to_owned()), renewed);
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
        .pairing
        .ca()
        .sign_csr_between(&csr, "test/other", now - DAY, now + 90 * DAY)
        .unwrap();
    rig.store().save_certificate(&cert).unwrap();
    let ready = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(ready.cert_info.common_name, CN);
    assert_eq!(rig.calls(), [INFO, CREDENTIALS]);
}

#[tokio::test]
async fn a_stored_certificate_that_does_not_match_its_key_is_replaced() {
    let rig = Rig::new().await;
    rig.store_secret();
    let now = SystemTime::now();
    let other = csr::certificate_request(CN, Arc::new(MemoryKey::generate().unwrap())).unwrap();
    let cert = rig
        .pairing
        .ca()
        .sign_csr_between(&other, CN, now - DAY, now + 90 * DAY)
        .unwrap();
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
    assert_eq!(rig.calls(), [INFO, CREDENTIALS]);
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
    assert!(rig.calls().is_empty());
}

#[tokio::test]
async fn a_token_file_written_later_is_picked_up() {
    let rig = Rig::new().await;
    std::fs::write(rig.token_file(), "\n").unwrap();
    let token_file = rig.token_file();
    let token = rig.pairing.agent_token();
    let phases = Mutex::new(Vec::new());
    let report = |phase: Phase| {
        if is_missing(&phase) {
            std::fs::write(&token_file, &token).unwrap();
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
async fn an_inhibited_device_is_reported_and_asks_for_no_certificate() {
    let rig = Rig::new().await;
    rig.store_secret();
    rig.state().set_inhibited(rig::DEVICE, true);
    let reporter = Reporter::new(|phase| *phase == Phase::Inhibited);
    let result = reporter.run(&mut rig.provisioner()).await;
    assert!(
        matches!(result, Err(ProvisioningError::Cancelled)),
        "{result:?}"
    );
    assert_eq!(rig.calls(), [INFO]);
}

#[tokio::test]
async fn server_errors_are_retried_without_operator_phases() {
    let rig = Rig::new().await;
    rig.store_secret();
    rig.state().fail_next(2, 503);
    let reporter = Reporter::never();
    reporter.run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(
        rig.answered(),
        answers(&[(INFO, 503), (INFO, 503), (INFO, 200), (CREDENTIALS, 201)])
    );
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
    rig.state().set_issued_cn(Some("test/someone-else".into()));
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
