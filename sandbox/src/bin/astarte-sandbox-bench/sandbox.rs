//! The sandbox for the benchmark: like `astarte-sandbox up`, but with no observer decoding
//! every message and with a broker that does not log every packet, so neither takes CPU from
//! what is measured. It also issues the certificate of a second "device" for the
//! `mosquitto_pub` floor: a CN of the same shape as the agent's, so the same ACL rule applies.

use std::path::PathBuf;
use std::time::Duration;

use astarte_sandbox::{Sandbox, SandboxOptions};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{BoxResult, runtime, stop_signal};

const PUBLISHER_CERT: &str = "publisher.pem";
const PUBLISHER_KEY: &str = "publisher.key";
const PUBLISHER_VALIDITY: Duration = Duration::from_secs(86_400);

pub fn run(dir: PathBuf, realm: String) -> BoxResult<()> {
    runtime()?.block_on(async {
        let opts = SandboxOptions {
            realm,
            broker_log_messages: false,
            dir: Some(dir.clone()),
            ..SandboxOptions::default()
        };
        let mut sandbox = Sandbox::start(opts).await?;
        let env = sandbox.write_env()?;
        let mut id = [0u8; 16];
        openssl::rand::rand_bytes(&mut id)?;
        let publisher_id = URL_SAFE_NO_PAD.encode(id);
        let cn = format!("{}/{publisher_id}", sandbox.realm());
        let identity = sandbox.issue_client_certificate(&cn, PUBLISHER_VALIDITY)?;
        let cert = dir.join(PUBLISHER_CERT);
        let key = dir.join(PUBLISHER_KEY);
        std::fs::write(&cert, &identity.cert_pem)?;
        std::fs::write(&key, &identity.key_pem)?;
        let description = serde_json::json!({
            "env": env,
            "realm": sandbox.realm(),
            "pairing_url": sandbox.pairing_url(),
            "ca_file": sandbox.ca_file(),
            "broker_port": sandbox.broker_port(),
            "broker_pid": sandbox.broker_pid(),
            "publisher_id": publisher_id,
            "publisher_cert": cert,
            "publisher_key": key,
        });
        println!("{description}");
        stop_signal().await?;
        sandbox.stop_broker().await;
        Ok(())
    })
}
