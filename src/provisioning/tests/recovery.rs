//! Lost, refused or half-recovered credentials, recovered by registering again (or reported
//! as missing when that can't work), against the stand-in's real answers: a device that has
//! a certificate is confirmed, so registering it again gets 422 until it is unregistered.

use super::rig::{DEVICE, INFO, REGISTER, Reporter, Rig, answers, is_missing};
use crate::provisioning::ProvisioningError;

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
