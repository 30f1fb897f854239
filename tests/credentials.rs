//! Credentials that survive anything, from outside: the real agent against the sandbox's
//! Pairing and broker. Every way of losing the credentials secret ends, with an agent token at
//! hand, in a new registration and a working session that delivers what was queued before, in
//! order; without a token the daemon waits, keeps queueing, and resumes when one appears.

mod common;

use astarte_sandbox::SandboxOptions;
use common::*;
use nix::sys::signal::Signal;

const STORED: &str = "/stored/value";

/// Stops the broker, queues `0..count` stored values, and stops the agent: what a wipe must
/// not lose.
async fn queue_offline(env: &mut TestEnv, mut agent: Agent, count: i32) {
    let proxy = env.proxy().await;
    env.sandbox.stop_broker().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    send_ints(&proxy, STORED, 0..count).await;
    assert!(agent.stop().await.success());
    env.sandbox.start_broker().await.unwrap();
}

/// Starts the agent and checks it registered again (after unregistering itself when Pairing
/// still knew the device), connected, and delivered `0..count` then newer data, in order.
async fn recovers_and_delivers(
    env: &TestEnv,
    observer: &mut astarte_sandbox::Observer,
    count: i32,
) -> Agent {
    let agent = env.start_agent().await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "connected", &agent).await;
    assert_eq!(
        env.sandbox.pairing().registrations(&env.device_id),
        3,
        "first registration, then 422 and a new one after unregistering:\n{}",
        agent.log()
    );
    send_ints(&proxy, STORED, count..count + 10).await;
    let values = collect_values(
        observer,
        &env.topic(DEVICE_DATASTREAM, STORED),
        count as usize + 10,
    )
    .await;
    assert_eq!(
        first_occurrences(&values),
        (0..count + 10).collect::<Vec<_>>(),
        "queued data first, in order, then newer data"
    );
    agent
}

/// A persistent broker, and Pairing issuing 20-second certificates: renewals come quickly.
async fn short_certificates() -> TestEnv {
    TestEnv::with_options(SandboxOptions {
        certificate_validity: std::time::Duration::from_secs(20),
        broker_persistence: true,
        ..SandboxOptions::default()
    })
    .await
}

fn unregistrations(env: &TestEnv) -> usize {
    env.sandbox
        .pairing()
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.status == 204)
        .count()
}

#[tokio::test]
async fn a_deleted_secret_is_recovered_and_data_queued_before_is_delivered_in_order() {
    let mut env = TestEnv::persistent().await;
    let (agent, _proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    queue_offline(&mut env, agent, 200).await;
    std::fs::remove_file(env.path("store/credentials/secret")).unwrap();
    let agent = recovers_and_delivers(&env, &mut observer, 200).await;
    assert_eq!(unregistrations(&env), 1, "{}", agent.log());
    assert!(
        !env.path("store/credentials/recovering").exists(),
        "the recovery is over"
    );
}

#[tokio::test]
async fn a_corrupt_secret_is_recovered() {
    let mut env = TestEnv::persistent().await;
    let (agent, _proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    queue_offline(&mut env, agent, 50).await;
    std::fs::write(env.path("store/credentials/secret"), "garbage\n").unwrap();
    let agent = recovers_and_delivers(&env, &mut observer, 50).await;
    assert!(agent.log().contains("corrupt"), "{}", agent.log());
}

#[tokio::test]
async fn a_whole_credentials_folder_deleted_is_recovered() {
    let mut env = TestEnv::persistent().await;
    let (agent, _proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    queue_offline(&mut env, agent, 50).await;
    std::fs::remove_dir_all(env.path("store/credentials")).unwrap();
    recovers_and_delivers(&env, &mut observer, 50).await;
}

#[tokio::test]
async fn a_secret_refused_by_pairing_is_replaced_by_registering_again() {
    let mut env = TestEnv::persistent().await;
    let (agent, _proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    queue_offline(&mut env, agent, 50).await;
    // Regenerated on the server: the stored one now gets 403.
    let stale = env
        .sandbox
        .pairing()
        .replace_secret(&env.device_id)
        .unwrap();
    let agent = recovers_and_delivers(&env, &mut observer, 50).await;
    let stored = std::fs::read_to_string(env.path("store/credentials/secret")).unwrap();
    assert_ne!(
        stored.trim(),
        stale,
        "a new secret, not the regenerated one"
    );
    assert_eq!(
        env.sandbox.pairing().secret(&env.device_id).as_deref(),
        Some(stored.trim()),
        "{}",
        agent.log()
    );
}

#[tokio::test]
async fn without_unregistering_an_already_registered_device_waits_and_says_how_to_fix_it() {
    let env = TestEnv::new().await;
    env.write_config("[recovery]\nunregister_if_registered = false\n");
    let (mut agent, _proxy) = env.start_connected_agent().await;
    assert!(agent.stop().await.success());
    std::fs::remove_file(env.path("store/credentials/secret")).unwrap();
    let mut agent = env.start_agent().await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "credentials-missing", &agent).await;
    let log = agent.log();
    assert!(
        log.contains(&format!("DELETE /v1/test/agent/devices/{}", env.device_id)),
        "{log}"
    );
    assert_eq!(unregistrations(&env), 0);
    assert!(proxy.device_id().await.is_ok(), "still serving D-Bus");
    assert!(agent.stop().await.success());
}

#[tokio::test]
async fn without_a_token_the_agent_waits_queues_and_recovers_when_a_token_file_appears() {
    let mut env = TestEnv::persistent().await;
    let (agent, _proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    queue_offline(&mut env, agent, 20).await;
    std::fs::remove_file(env.path("store/credentials/secret")).unwrap();
    std::fs::remove_file(env.path("pairing-token")).unwrap();

    let agent = env.start_agent().await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "credentials-missing", &agent).await;
    // Still accepting and queueing data.
    send_ints(&proxy, STORED, 20..30).await;
    assert_eq!(queued_messages(&env).await, 30);
    assert!(
        agent.log().contains("pairing-token"),
        "the log names what to provision:\n{}",
        agent.log()
    );

    std::fs::write(env.path("pairing-token"), env.sandbox.agent_token()).unwrap();
    wait_for_state(&proxy, "connected", &agent).await;
    let values = collect_values(&mut observer, &env.topic(DEVICE_DATASTREAM, STORED), 30).await;
    assert_eq!(first_occurrences(&values), (0..30).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_token_given_with_register_recovers_the_device() {
    let env = TestEnv::new().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    assert!(agent.stop().await.success());
    std::fs::remove_file(env.path("store/credentials/secret")).unwrap();
    std::fs::remove_file(env.path("pairing-token")).unwrap();
    let agent = env.start_agent().await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "credentials-missing", &agent).await;

    assert_eq!(
        error_name(proxy.register("not a token").await),
        "org.astarte_platform.Agent1.Error.InvalidToken"
    );
    let expired = env.sandbox.expired_token().unwrap();
    proxy.register(&expired).await.unwrap();
    agent.wait_for_log("expired").await;
    assert_eq!(proxy.state().await.unwrap(), "credentials-missing");

    proxy.register(&env.sandbox.agent_token()).await.unwrap();
    wait_for_state(&proxy, "connected", &agent).await;
    assert_eq!(unregistrations(&env), 1);
}

#[tokio::test]
async fn a_token_without_the_unregister_claim_is_reported_and_not_retried() {
    let env = TestEnv::new().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    assert!(agent.stop().await.success());
    std::fs::remove_file(env.path("store/credentials/secret")).unwrap();
    let register_only = env
        .sandbox
        .token_with_claims(&["POST::agent/devices"])
        .unwrap();
    std::fs::write(env.path("pairing-token"), register_only).unwrap();
    let agent = env.start_agent().await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "credentials-missing", &agent).await;
    agent.wait_for_log("a_pa claim allows DELETE").await;
    let refused = env.sandbox.pairing().requests().len();
    // A better token is picked up without a restart.
    std::fs::write(env.path("pairing-token"), env.sandbox.agent_token()).unwrap();
    wait_for_state(&proxy, "connected", &agent).await;
    let requests = env.sandbox.pairing().requests();
    let deletes: Vec<_> = requests.iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(
        deletes.iter().map(|r| r.status).collect::<Vec<_>>(),
        [403, 204],
        "one refused DELETE, never retried with the same token, then the new token's:\n{requests:#?}"
    );
    assert!(refused < requests.len());
}

#[tokio::test]
async fn an_interrupted_recovery_resumes_at_the_next_start() {
    // What SIGKILL leaves at each step of a recovery: the marker with nothing else (killed
    // after the wipe), with a registration Pairing made but whose answer was lost, or with
    // the new secret already stored. Each resumes and ends connected with one valid secret.
    for step in ["wiped", "registered-answer-lost", "secret-stored"] {
        let env = TestEnv::new().await;
        let (mut agent, _proxy) = env.start_connected_agent().await;
        agent.stop_with(Signal::SIGKILL).await;
        let credentials = env.path("store/credentials");
        for name in ["secret", "client.key", "client.crt", "broker"] {
            let _ = std::fs::remove_file(credentials.join(name));
        }
        std::fs::write(credentials.join("recovering"), "").unwrap();
        match step {
            "wiped" => {}
            "registered-answer-lost" => {
                env.sandbox.pairing().unregister(&env.device_id);
                env.sandbox.pairing().register(&env.device_id).unwrap();
            }
            _ => {
                let secret = env
                    .sandbox
                    .pairing()
                    .replace_secret(&env.device_id)
                    .unwrap();
                std::fs::write(credentials.join("secret"), secret).unwrap();
            }
        }
        let (agent, _proxy) = env.start_connected_agent().await;
        assert!(
            !credentials.join("recovering").exists(),
            "{step}: {}",
            agent.log()
        );
        let stored = std::fs::read_to_string(credentials.join("secret")).unwrap();
        assert_eq!(
            env.sandbox.pairing().secret(&env.device_id).as_deref(),
            Some(stored.trim()),
            "{step}"
        );
    }
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_without_losing_data() {
    let env = short_certificates().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    let pairing = env.sandbox.pairing();
    // Send in small batches until two renewals have happened, then check everything arrived.
    let mut sent = 0;
    while pairing.certificate_requests(&env.device_id) < 3 {
        send_ints(&proxy, STORED, sent..sent + 20).await;
        sent += 20;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(sent < 20 * 1000, "no renewal:\n{}", agent.log());
    }
    let values = collect_values(
        &mut observer,
        &env.topic(DEVICE_DATASTREAM, STORED),
        sent as usize,
    )
    .await;
    assert_eq!(first_occurrences(&values), (0..sent).collect::<Vec<_>>());
    assert_eq!(pairing.registrations(&env.device_id), 1);
}

#[tokio::test]
async fn a_secret_refused_while_running_is_recovered_at_the_next_renewal() {
    let env = short_certificates().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    env.sandbox
        .pairing()
        .replace_secret(&env.device_id)
        .unwrap();
    agent.wait_for_log("credentials recovered").await;
    wait_for_state(&proxy, "connected", &agent).await;
    send_ints(&proxy, STORED, 0..10).await;
    let values = collect_values(&mut observer, &env.topic(DEVICE_DATASTREAM, STORED), 10).await;
    assert_eq!(first_occurrences(&values), (0..10).collect::<Vec<_>>());
    assert_eq!(env.sandbox.pairing().registrations(&env.device_id), 3);
}
