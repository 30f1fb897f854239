//! Lost, refused or half-recovered credentials, recovered by registering again (or reported
//! as missing when that can't work), against the stand-in's real answers: a device that has
//! a certificate is confirmed, so registering it again gets 422 until it is unregistered.

use std::time::Duration;

use rstest::rstest;

use super::rig::{
    CREDENTIALS, DEVICE, INFO, REGISTER, Reporter, Rig, Running, UNREGISTER, answers, is_missing,
};
use crate::provisioning::{Phase, ProvisioningError, Ready};

/// What recovering a confirmed device asks Pairing, from registering to the new certificate.
const REREGISTERED: [(&str, u16); 5] = [
    (REGISTER, 422),
    (UNREGISTER, 204),
    (REGISTER, 201),
    (INFO, 200),
    (CREDENTIALS, 201),
];

/// The end of every successful recovery: the stored secret is the one Pairing knows now
/// (it just answered device info with it), the certificate is new and stored, no recovery is
/// pending.
fn assert_recovered(rig: &Rig, before: &Ready, after: &Ready) {
    assert_eq!(
        rig.state().secret(DEVICE).as_deref(),
        Some(after.secret.expose())
    );
    assert_eq!(
        rig.store().load_secret().unwrap(),
        Some(after.secret.clone())
    );
    assert_ne!(after.secret, before.secret);
    assert_ne!(after.cert_pem, before.cert_pem);
    assert_eq!(
        rig.store().load_certificate().unwrap().as_ref(),
        Some(&after.cert_pem)
    );
    assert_eq!(
        rig.state().issued_certificates(DEVICE).last(),
        Some(&after.cert_pem)
    );
    assert!(!rig.store().recovery_pending());
}

#[tokio::test]
async fn a_deleted_secret_with_a_token_registers_again_after_unregistering() {
    let rig = Rig::new().await;
    let before = rig.provisioned().await;
    let seen = rig.answered().len();
    std::fs::remove_file(rig.store().secret_path()).unwrap();
    let after = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(rig.answered_since(seen), answers(&REREGISTERED));
    assert_recovered(&rig, &before, &after);
}

#[tokio::test]
async fn with_unregistering_off_an_already_registered_device_explains_how_to_recover() {
    let rig = Rig::new().await;
    rig.provisioned().await;
    std::fs::remove_file(rig.store().secret_path()).unwrap();
    let seen = rig.answered().len();
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
    // Refused as already registered, and never unregistered.
    assert_eq!(rig.answered_since(seen), answers(&[(REGISTER, 422)]));
}

#[rstest]
#[case::replaced(|rig: &Rig| drop(rig.state().replace_secret(DEVICE).unwrap()))]
#[case::forgotten(|rig: &Rig| rig.state().forget_secret(DEVICE))]
#[tokio::test]
async fn a_refused_secret_with_a_token_is_recovered(#[case] refuse: fn(&Rig)) {
    let rig = Rig::new().await;
    let before = rig.provisioned().await;
    refuse(&rig);
    let seen = rig.answered().len();
    let after = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    let mut expected = answers(&[(INFO, 403)]);
    expected.extend(answers(&REREGISTERED));
    assert_eq!(rig.answered_since(seen), expected);
    assert_recovered(&rig, &before, &after);
}

#[tokio::test]
async fn a_rejected_stored_secret_without_a_token_is_reported_and_kept() {
    let rig = Rig::new().await;
    let before = rig.provisioned().await;
    std::fs::remove_file(rig.token_file()).unwrap();
    rig.state().replace_secret(DEVICE).unwrap();
    let seen = rig.answered().len();
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
    assert_eq!(rig.store().load_secret().unwrap(), Some(before.secret));
    // Only the refused device info: no registration was attempted.
    assert_eq!(rig.answered_since(seen), answers(&[(INFO, 403)]));
}

#[tokio::test]
async fn a_corrupt_secret_file_is_recovered() {
    let rig = Rig::new().await;
    let before = rig.provisioned().await;
    let seen = rig.answered().len();
    std::fs::write(rig.store().secret_path(), "not a secret\n").unwrap();
    let after = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(rig.answered_since(seen), answers(&REREGISTERED));
    assert_recovered(&rig, &before, &after);
}

#[tokio::test]
async fn a_token_without_delete_permission_is_reported_and_not_retried_until_it_changes() {
    let rig = Rig::new().await;
    let register_only = rig
        .pairing
        .token_with_claims(&["POST::agent/devices"])
        .unwrap();
    rig.write_token_value(&register_only);
    let before = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    std::fs::remove_file(rig.store().secret_path()).unwrap();
    let seen = rig.answered().len();

    let mut running = Running::spawn(rig.provisioner());
    let reason = running.credentials_missing().await;
    assert!(reason.contains("a_pa"), "{reason}");
    assert!(
        reason.contains("DELETE on agent/devices/2TBn-jNESuuHamE2Zo1anA"),
        "{reason}"
    );
    let refused = answers(&[(REGISTER, 422), (UNREGISTER, 403)]);
    assert_eq!(rig.answered_since(seen), refused);
    // Many fast backoff periods (at most 5 ms each) later, the same token is not tried again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rig.answered_since(seen), refused);

    rig.write_token();
    let after = running.ready().await;
    let mut expected = refused;
    expected.extend(answers(&REREGISTERED));
    assert_eq!(rig.answered_since(seen), expected);
    assert_recovered(&rig, &before, &after);
}

#[tokio::test]
async fn an_interrupted_recovery_wipes_and_registers_again() {
    let rig = Rig::new().await;
    let before = rig.provisioned().await;
    let seen = rig.answered().len();
    // As if the agent stopped right after marking: the old secret is still in place.
    rig.store().mark_recovery().unwrap();
    let after = Reporter::never().run(&mut rig.provisioner()).await.unwrap();
    assert_eq!(rig.answered_since(seen), answers(&REREGISTERED));
    assert_recovered(&rig, &before, &after);
}

#[tokio::test]
async fn an_expired_token_is_reported_without_asking_pairing() {
    let rig = Rig::new().await;
    rig.write_token_value(&rig.pairing.expired_token().unwrap());
    let reporter = Reporter::new(is_missing);
    let result = reporter.run(&mut rig.provisioner()).await;
    assert!(
        matches!(result, Err(ProvisioningError::Cancelled)),
        "{result:?}"
    );
    let reason = reporter.missing_reason();
    assert!(reason.contains("expired"), "{reason}");
    assert!(rig.answered().is_empty());
}

#[tokio::test]
async fn a_token_given_with_register_wakes_a_provisioner_waiting_for_one() {
    let rig = Rig::new().await;
    let mut running = Running::spawn(rig.provisioner());
    let reason = running.credentials_missing().await;
    assert!(reason.contains("agent-token"), "{reason}");
    rig.tokens.give(&rig.pairing.agent_token()).unwrap();
    let ready = running.ready().await;
    assert_eq!(
        rig.state().secret(DEVICE).as_deref(),
        Some(ready.secret.expose())
    );
    assert_eq!(
        rig.answered(),
        answers(&[(REGISTER, 201), (INFO, 200), (CREDENTIALS, 201)])
    );
    let mut later = Vec::new();
    while let Ok(phase) = running.phases.try_recv() {
        later.push(phase);
    }
    assert_eq!(later, [Phase::Registering, Phase::ObtainingCredentials]);
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_is_an_error_not_a_lost_secret() {
    // An I/O failure (here: a folder where the file should be) says nothing about the secret
    // Pairing knows: wiping it and registering again would strand a healthy device.
    let rig = Rig::new().await;
    rig.provisioned().await;
    let seen = rig.answered().len();
    let secret_path = rig.store().secret_path();
    std::fs::remove_file(&secret_path).unwrap();
    std::fs::create_dir(&secret_path).unwrap();
    let result = rig.provisioner().secret(&|_| {}).await;
    assert!(
        matches!(
            result,
            Err(ProvisioningError::Store {
                source: crate::credentials::CredentialsError::Read { .. }
            })
        ),
        "{result:?}"
    );
    assert!(rig.answered_since(seen).is_empty());
    assert!(!rig.store().recovery_pending());
}
