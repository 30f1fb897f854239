//! A private `dbus-daemon` per test: no shared state with the host's buses.

use std::process::Stdio;

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use zbus::fdo::DBusProxy;

pub struct PrivateBus {
    child: Child,
    address: String,
}

impl PrivateBus {
    pub async fn start() -> PrivateBus {
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("dbus-daemon starts (apt-get install dbus)");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .expect("dbus-daemon prints its address");
        PrivateBus {
            child,
            address: line.trim().to_owned(),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub async fn connection(&self) -> zbus::Connection {
        connect(&self.address).await
    }

    /// Resolves when `name` gets an owner on this bus (subscribed before the caller starts
    /// the service, so the change cannot be missed).
    pub fn wait_for_name_owner(
        &self,
        name: &'static str,
    ) -> impl std::future::Future<Output = ()> + use<> {
        let address = self.address.clone();
        async move {
            let connection = connect(&address).await;
            let dbus = DBusProxy::new(&connection).await.expect("dbus proxy");
            let mut changes = dbus
                .receive_name_owner_changed_with_args(&[(0, name)])
                .await
                .expect("subscribe");
            if dbus
                .name_has_owner(name.try_into().expect("valid name"))
                .await
                .unwrap_or(false)
            {
                return;
            }
            while let Some(change) = changes.next().await {
                if change.args().is_ok_and(|args| args.new_owner().is_some()) {
                    return;
                }
            }
        }
    }
}

async fn connect(address: &str) -> zbus::Connection {
    zbus::connection::Builder::address(address)
        .expect("address parses")
        .build()
        .await
        .expect("connects to the private bus")
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
