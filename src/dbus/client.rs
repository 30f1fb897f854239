//! A client for `org.astarte_platform.Agent1.Device`, for Rust apps on the device (and the
//! agent's own `status` command and tests). It is generated from the same method names and
//! signatures as the service; `dbus/org.astarte_platform.Agent1.xml` documents them.
//!
//! ```no_run
//! # async fn example() -> zbus::Result<()> {
//! let connection = zbus::Connection::system().await?;
//! let agent = astarte_agent::dbus::client::DeviceProxy::new(&connection).await?;
//! agent
//!     .send("org.example.Telemetry", "/room1/temperature", &21.5.into())
//!     .await?;
//! println!("{}", agent.state().await?);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;

use zbus::zvariant::{OwnedValue, Value};

#[zbus::proxy(
    interface = "org.astarte_platform.Agent1.Device",
    default_service = "org.astarte_platform.Agent1",
    default_path = "/org/astarte_platform/Agent1"
)]
pub trait Device {
    fn send(&self, interface: &str, path: &str, value: &Value<'_>) -> zbus::Result<()>;
    fn send_at(
        &self,
        interface: &str,
        path: &str,
        value: &Value<'_>,
        timestamp_ms: i64,
    ) -> zbus::Result<()>;
    fn send_object(
        &self,
        interface: &str,
        path: &str,
        values: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<()>;
    fn send_object_at(
        &self,
        interface: &str,
        path: &str,
        values: HashMap<&str, Value<'_>>,
        timestamp_ms: i64,
    ) -> zbus::Result<()>;
    fn set_property(&self, interface: &str, path: &str, value: &Value<'_>) -> zbus::Result<()>;
    fn unset_property(&self, interface: &str, path: &str) -> zbus::Result<()>;
    fn get_property(&self, interface: &str, path: &str) -> zbus::Result<OwnedValue>;
    fn list_properties(&self, interface: &str) -> zbus::Result<HashMap<String, OwnedValue>>;
    fn add_interface(&self, json: &str) -> zbus::Result<()>;
    fn remove_interface(&self, name: &str) -> zbus::Result<()>;
    fn register(&self, token: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    fn data_received(
        &self,
        interface: String,
        path: String,
        value: OwnedValue,
        timestamp_ms: i64,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn property_unset(&self, interface: String, path: String) -> zbus::Result<()>;

    #[zbus(property)]
    fn device_id(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn realm(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn interfaces(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn queued_messages(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn broker(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn certificate_expiry(&self) -> zbus::Result<i64>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<(i64, String)>;
    #[zbus(property)]
    fn store_bytes(&self) -> zbus::Result<u64>;
}

/// `org.astarte_platform.Agent1.Commands`: for an app that handles remote commands.
#[zbus::proxy(
    interface = "org.astarte_platform.Agent1.Commands",
    default_service = "org.astarte_platform.Agent1",
    default_path = "/org/astarte_platform/Agent1"
)]
pub trait Commands {
    fn register_handler(&self, name: &str) -> zbus::Result<()>;
    fn complete(&self, id: &str, exit_code: i32, stdout: &str, stderr: &str) -> zbus::Result<()>;
    fn list_commands(&self) -> zbus::Result<Vec<(String, String, String, i64)>>;
    #[zbus(signal)]
    fn command_requested(&self, id: String, name: String, args: Vec<String>) -> zbus::Result<()>;
    #[zbus(signal)]
    fn command_finished(&self, id: String, status: String) -> zbus::Result<()>;
}
