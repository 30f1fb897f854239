//! The D-Bus floor: a service with the agent's object path and interface whose `Send` does
//! nothing, on the same kind of runtime as the agent (zbus on a current-thread tokio).

use zbus::zvariant::Value;

use crate::{BoxResult, runtime, stop_signal};

struct Null;

#[zbus::interface(name = "org.astarte_platform.Agent1.Device")]
impl Null {
    async fn send(&self, _interface: &str, _path: &str, _value: Value<'_>) {}
}

pub fn run(name: String) -> BoxResult<()> {
    runtime()?.block_on(async {
        let address = std::env::var("DBUS_SESSION_BUS_ADDRESS")
            .map_err(|_| "DBUS_SESSION_BUS_ADDRESS is not set")?;
        let _connection = zbus::connection::Builder::address(address.as_str())?
            .name(name.as_str())?
            .serve_at("/org/astarte_platform/Agent1", Null)?
            .build()
            .await?;
        println!("{}", serde_json::json!({ "ready": name }));
        stop_signal().await?;
        Ok(())
    })
}
