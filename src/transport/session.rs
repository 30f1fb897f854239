//! One MQTT session with Astarte's broker for one set of credentials: connects (rumqttc polled
//! by `driver`, on the network thread), runs the handshake when the broker has no session for
//! the device, moves queued messages out as fast as acknowledgements allow, and hands server
//! data to the router.
//!
//! Where the session stands is a [`Phase`] (`phase.rs`). Sessions: the first connection of a
//! session starts clean (rumqttc's in-memory state is new, so half-finished QoS 2 exchanges of
//! an earlier process must not be resumed), unless the previous process stopped cleanly and
//! said so (see `resume.rs`): then the broker's session, with what it queued for the device
//! meanwhile, is resumed. Later reconnections always ask the broker to keep the session, so
//! QoS 1/2 traffic survives outages. Whenever the broker reports no session, the full
//! handshake runs again.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, PubRel, Request, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::driver::{self, DriverEvent, Link, LostReason};
use super::phase::{OnConnect, Phase};
use super::poison::Suspect;
use super::resume::{Resume, ResumeRecord};
use super::tracker::Tracker;
use crate::interface::registry::Registry;
use crate::interface::runtime::LiveRegistry;
use crate::properties::PropertyStore;
use crate::queue::Queue;
use crate::router::Router;
use crate::state::{AgentState, StateTx};
use crate::store::Store;
use crate::tasks::{Spawner, Task};
use crate::topic::Topics;

/// Requests handed to rumqttc and not yet acknowledged, at most: below Astarte's limit (100).
pub const MAX_OUTSTANDING: usize = 64;
/// rumqttc's in-flight window: packet ids cycle through 1..=MAX_INFLIGHT.
pub const MAX_INFLIGHT: u16 = 100;
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
pub const CONNECT_TIMEOUT_SECS: u64 = 20;
/// How long a shutdown or certificate renewal waits for unacknowledged messages.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_INCOMING_PACKET: usize = 1024 * 1024;
/// Fixed header of a PUBLISH is at most 5 bytes on top of Astarte's 65,535-byte cap.
const MAX_OUTGOING_PACKET: usize = 65_535 + 5;
/// Requests rumqttc's channel holds: at most what MAX_OUTSTANDING lets through, plus a few
/// acknowledgements of server data and a DISCONNECT.
pub const REQUEST_CHANNEL: usize = MAX_OUTSTANDING + 8;

/// What a session needs that outlives it.
pub struct SessionContext {
    pub topics: Topics,
    pub registry: Arc<LiveRegistry>,
    pub properties: Arc<PropertyStore>,
    pub queue: Arc<Queue>,
    pub store: Store,
    pub state: StateTx,
    /// Server data to its owner: D-Bus signals, or a feature such as remote commands.
    pub router: Router,
    /// Confirmations of routed messages: each becomes the broker's acknowledgement.
    pub confirmations: tokio::sync::Mutex<mpsc::UnboundedReceiver<u64>>,
    /// Where the session's own tasks run: the MQTT driver, on the network thread. The session
    /// stops them itself (after flushing), so this spawner's token is not the agent's.
    pub network: Spawner,
}

/// Where and how to connect.
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: Arc<rustls::ClientConfig>,
    /// Where a clean stop records that the broker's session may be resumed.
    pub resume: ResumeRecord,
}

/// Why a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// `cancel` fired: the agent stops, or new credentials replace these.
    Shutdown,
    /// The broker refused the client certificate; `had_connected` tells whether it had
    /// accepted it earlier in this session.
    CertificateRejected { had_connected: bool },
    /// The MQTT driver stopped unexpectedly (a bug): the daemon exits with an error.
    Failed,
}

pub async fn run(
    context: &SessionContext,
    endpoint: Endpoint,
    cancel: &CancellationToken,
) -> SessionEnd {
    let identity = format!(
        "{}@{}:{}",
        context.topics.base(),
        endpoint.host,
        endpoint.port
    );
    let resume = endpoint.resume.take(&identity).await;
    let options = mqtt_options(context.topics.base(), &endpoint, resume);
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL);
    eventloop
        .network_options
        .set_connection_timeout(CONNECT_TIMEOUT_SECS);
    match resume {
        Resume::Clean => {}
        Resume::AfterCleanStop => {
            tracing::info!("resuming the broker session the previous run left cleanly")
        }
        Resume::AfterCrash => {
            tracing::info!(
                "resuming the broker session of a run that did not stop cleanly: releasing its packet ids first"
            );
            eventloop.pending.extend(release_every_packet_id());
        }
    }

    let (events_tx, events) = mpsc::channel(64);
    let link = Link::default();
    let driver = context.network.spawn("mqtt-driver", {
        let link = link.clone();
        move |stop| driver::drive(eventloop, events_tx, link, stop)
    });
    let record = (resume == Resume::Clean).then(|| (endpoint.resume.clone(), identity.clone()));
    let mut session = Session::new(context, client, events, link, resume, record);
    context.state.send_replace(AgentState::Connecting);
    let end = session.run(cancel).await;
    let resumable = session.close(driver).await;
    if resumable && end == SessionEnd::Shutdown {
        endpoint.resume.clean_stop(&identity).await;
    }
    end
}

/// After a crash the broker may still hold any of our packet ids in a QoS 2 exchange (ours in
/// flight then, stored or volatile, whatever this process knows of them): a new message with
/// such an id would be taken for the old one's duplicate and dropped. A PUBREL for every id,
/// sent before anything else, ends whatever exchange the broker holds (the broker answers
/// PUBCOMP for an id it does not hold); the messages it held are then delivered, and stored
/// ones not acknowledged yet are sent again with new ids (at least once, never lost).
pub(super) fn release_every_packet_id() -> impl Iterator<Item = Request> {
    (1..=MAX_INFLIGHT).map(|pkid| Request::PubRel(PubRel::new(pkid)))
}

/// How the session connects to `endpoint` as `client_id`. The first connection starts a
/// clean broker session unless `resume` says the previous run's session is to be resumed.
pub(super) fn mqtt_options(client_id: &str, endpoint: &Endpoint, resume: Resume) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, endpoint.host.clone(), endpoint.port);
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_clean_session(resume == Resume::Clean)
        .set_manual_acks(true)
        .set_inflight(MAX_INFLIGHT)
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET)
        .set_transport(Transport::Tls(TlsConfiguration::Rustls(
            endpoint.tls.clone(),
        )));
    options
}

pub(super) struct Session<'a> {
    pub(super) context: &'a SessionContext,
    pub(super) client: AsyncClient,
    events: mpsc::Receiver<DriverEvent>,
    pub(super) tracker: Tracker,
    /// Which connection is up (shared with the driver).
    pub(super) link: Link,
    pub(super) phase: Phase,
    /// The broker accepted a connection at least once.
    connected_once: bool,
    /// The interfaces in force; a change publishes the new introspection.
    registry: watch::Receiver<Arc<Registry>>,
    /// Server-owned interfaces subscribed to in the broker's session.
    pub(super) subscribed: BTreeSet<String>,
    /// The message the broker may be refusing (see `poison.rs`).
    pub(super) suspect: Suspect,
    /// Stored rows acknowledged (or expired) since the store was last told.
    pub(super) delivered: Vec<u64>,
    /// Messages from Astarte a feature holds, acknowledged when it confirms (see router).
    pub(super) pending_acks: HashMap<u64, rumqttc::Publish>,
    /// Where to record, once the handshake finished, that the broker keeps the session.
    pub(super) record: Option<(ResumeRecord, String)>,
}

impl<'a> Session<'a> {
    pub(super) fn new(
        context: &'a SessionContext,
        client: AsyncClient,
        events: mpsc::Receiver<DriverEvent>,
        link: Link,
        resume: Resume,
        record: Option<(ResumeRecord, String)>,
    ) -> Session<'a> {
        Session {
            context,
            client,
            events,
            tracker: Tracker::new(),
            link,
            // Only after a clean stop is the broker's session known to be synced; after a
            // crash, queued property changes were lost with the memory: the handshake runs.
            phase: Phase::start(resume == Resume::AfterCleanStop),
            connected_once: false,
            registry: context.registry.subscribe(),
            subscribed: BTreeSet::new(),
            suspect: Suspect::default(),
            delivered: Vec::new(),
            pending_acks: HashMap::new(),
            record,
        }
    }

    pub(super) async fn run(&mut self, cancel: &CancellationToken) -> SessionEnd {
        // Sessions never overlap: this one owns the confirmations while it runs.
        let mut confirmations = self.context.confirmations.lock().await;
        loop {
            let can_feed = self.phase.is_ready() && self.tracker.outstanding() < MAX_OUTSTANDING;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return SessionEnd::Shutdown,
                event = self.events.recv() => match event {
                    Some(event) => {
                        if let Some(end) = self.on_event(event) {
                            return end;
                        }
                    }
                    // The driver only stops when asked to: anything else is a failure.
                    None if cancel.is_cancelled() => return SessionEnd::Shutdown,
                    None => return SessionEnd::Failed,
                },
                Some(receipt) = confirmations.recv() => self.on_confirmed(receipt),
                _ = self.context.queue.changed(), if can_feed => {}
                changed = self.registry.changed() => {
                    if changed.is_ok() {
                        self.registry.borrow_and_update();
                        self.on_interfaces_changed();
                    }
                }
            }
            self.feed();
            self.flush_delivered();
        }
    }

    pub(super) fn on_event(&mut self, event: DriverEvent) -> Option<SessionEnd> {
        match event {
            DriverEvent::Lost(reason) => return self.on_lost(reason),
            DriverEvent::Connected {
                generation,
                session_present,
            } => self.on_connected(generation, session_present),
            DriverEvent::Mqtt(Event::Incoming(packet)) => self.on_incoming(packet),
            DriverEvent::Mqtt(Event::Outgoing(outgoing)) => match outgoing {
                Outgoing::Publish(pkid) => {
                    let completed = self.tracker.on_publish_written(pkid);
                    self.on_completed(completed);
                }
                Outgoing::Subscribe(pkid) => self.tracker.on_subscribe_written(pkid),
                Outgoing::AwaitAck(pkid) => self.tracker.on_await_ack(pkid),
                _ => {}
            },
        }
        None
    }

    /// A feature has a message from Astarte safe (`receipt`): the broker may forget it.
    pub(super) fn on_confirmed(&mut self, receipt: u64) {
        if let Some(publish) = self.pending_acks.remove(&receipt) {
            self.acknowledge(&publish);
        }
    }

    fn on_lost(&mut self, reason: LostReason) -> Option<SessionEnd> {
        let was_up = self.phase.is_up();
        if self.phase.is_ready() {
            self.suspect_oldest_unacknowledged();
        }
        let phase = std::mem::replace(&mut self.phase, Phase::start(false));
        self.phase = phase.lost();
        self.context.queue.set_online(false);
        self.tracker.on_link_lost();
        // Acknowledgements belong to the connection that is gone: the broker redelivers.
        self.pending_acks.clear();
        self.context.state.send_replace(AgentState::Disconnected);
        let dropped = self.context.queue.drop_discardable();
        match &reason {
            LostReason::CertificateRejected(error) => {
                tracing::warn!(%error, "the broker refused the client certificate");
                return Some(SessionEnd::CertificateRejected {
                    had_connected: self.connected_once,
                });
            }
            LostReason::BrokerUntrusted(error) => {
                tracing::error!(%error, "the broker's certificate is not trusted: check ca_file and the system roots; retrying")
            }
            LostReason::Refused(code) => {
                tracing::warn!(%code, "the broker refused the connection (is the device registered and enabled in the realm?); retrying")
            }
            LostReason::Other(error) if was_up => {
                tracing::warn!(%error, "connection to the broker lost; reconnecting")
            }
            LostReason::Other(error) => {
                tracing::info!(%error, "couldn't connect to the broker; retrying")
            }
        }
        if dropped > 0 {
            tracing::info!(
                dropped,
                "dropped queued datastream values with retention discard"
            );
        }
        None
    }

    fn on_connected(&mut self, generation: u64, session_present: bool) {
        self.connected_once = true;
        self.context.queue.set_online(true);
        let (context, subscribed) = (self.context, &mut self.subscribed);
        let registry = context.registry.snapshot();
        let phase = std::mem::replace(&mut self.phase, Phase::start(false));
        let (phase, todo) = phase.connected(
            generation,
            session_present,
            || super::handshake::steps(&context.topics, &registry, &context.properties),
            || super::feed::announce_steps(context, subscribed),
        );
        self.phase = phase;
        match todo {
            OnConnect::Resumed => {
                tracing::info!("connected to the broker; session resumed");
                self.context.state.send_replace(AgentState::Connected);
                return;
            }
            OnConnect::Fresh => {
                // Nothing unacknowledged survives a lost session in rumqttc: take it back, in order.
                let unfinished = self.tracker.take_unfinished();
                let unfinished = self.set_aside_poison(unfinished);
                if !unfinished.is_empty() {
                    tracing::info!(
                        messages = unfinished.len(),
                        "requeueing messages the broker never acknowledged"
                    );
                }
                self.context.queue.requeue_front(unfinished);
            }
            OnConnect::Resync => {}
        }
        // The handshake resends every property's current value: queued property messages are stale.
        self.context.queue.drop_properties();
        self.subscribed = registry
            .server_owned()
            .map(|interface| interface.name.clone())
            .collect();
        tracing::info!("connected to the broker; running the session handshake");
        self.context.state.send_replace(AgentState::Connecting);
    }

    /// Flushes what can be flushed within [`FLUSH_TIMEOUT`], disconnects, and requeues the rest.
    /// Returns whether the broker's session may be resumed by a later process: synced, and
    /// nothing left half-done.
    pub(super) async fn close(mut self, driver: Task) -> bool {
        let deadline = tokio::time::Instant::now() + FLUSH_TIMEOUT;
        while self.phase.is_ready()
            && (self.tracker.outstanding() > 0 || !self.context.queue.is_empty())
        {
            self.feed();
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                event = self.events.recv() => match event {
                    Some(DriverEvent::Mqtt(event)) => { self.on_event(DriverEvent::Mqtt(event)); }
                    _ => break,
                },
            }
        }
        let resumable =
            self.phase.is_ready() && self.phase.is_synced() && self.tracker.outstanding() == 0;
        if self.phase.is_up() {
            let _ = self.client.try_disconnect();
            // The driver ends after writing DISCONNECT; don't wait forever on a dead network.
            let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), async {
                while self.events.recv().await.is_some() {}
            })
            .await;
        }
        // A driver blocked on a full event channel must not keep the shutdown waiting.
        self.events.close();
        if let Err(error) = driver.stop_within(Duration::from_secs(2)).await {
            tracing::warn!(%error, "the MQTT driver did not stop cleanly");
        }
        self.flush_delivered();
        self.context
            .queue
            .requeue_front(self.tracker.take_unfinished());
        resumable
    }
}
