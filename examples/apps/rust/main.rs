//! A device app talking to astarte-agent over D-Bus, in Rust with the crate's own proxies
//! (`astarte_agent::dbus::client`, zbus on tokio).
//!
//! It sends a datastream value, sets a property, prints every DataReceived signal and handles
//! the remote command "hello" (RegisterHandler, then CommandRequested -> Complete). It prints
//! "ready" once it listens, and exits after completing one command (a real app keeps running).
//!
//! Run: cargo run --example astarte-app. Bus: the system bus; DBUS_SYSTEM_BUS_ADDRESS points
//! it elsewhere (a test's private bus).

use astarte_agent::dbus::client::{CommandsProxy, DeviceProxy};
use futures_util::StreamExt;
use zbus::zvariant::Value;

const TELEMETRY: &str = "org.astarte-platform.agent.example.Telemetry";
const DEVICE_CONFIG: &str = "org.astarte-platform.agent.example.DeviceConfig";

#[tokio::main(flavor = "current_thread")]
async fn main() -> zbus::Result<()> {
    let connection = zbus::Connection::system().await?;
    let device = DeviceProxy::new(&connection).await?;
    let commands = CommandsProxy::new(&connection).await?;
    // Subscribe first: a signal sent before its match rule is in place is lost.
    let mut data = device.receive_data_received().await?;
    // CommandRequested is sent to this connection only: the handler is this connection, and
    // the agent forgets it when the app leaves the bus.
    let mut requests = commands.receive_command_requested().await?;
    commands.register_handler("hello").await?;

    let value = Value::F64(21.5);
    device.send(TELEMETRY, "/room1/double", &value).await?;
    let name = Value::from("kitchen");
    device.set_property(DEVICE_CONFIG, "/name", &name).await?;
    println!("ready");

    loop {
        tokio::select! {
            Some(signal) = data.next() => {
                let data = signal.args()?;
                println!("DataReceived {} {} {}", data.interface, data.path, *data.value);
            }
            Some(request) = requests.next() => {
                let request = request.args()?;
                let args = request.args.join(" ");
                println!("CommandRequested {} {} {args}", request.id, request.name);
                // Exit code 0 reports "completed", anything else "failed".
                let stdout = format!("hello {args}\n");
                commands.complete(&request.id, 0, &stdout, "").await?;
                return Ok(());
            }
            else => return Err(zbus::Error::Failure("the bus connection closed".into())),
        }
    }
}
