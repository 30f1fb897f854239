//! The session without a broker. A [`Rig`] holds what a session needs (a store in a
//! temporary folder, the queue, interfaces, properties, the router) and rumqttc's client,
//! whose request channel the tests read. The tests play rumqttc and the broker: they report
//! what rumqttc wrote, what the broker answered and connections coming and going, and call
//! the session the way its run loop does (each event, then `feed`, then `flush_delivered`).

mod delivery;
mod driver;
mod flow;
mod handshake;
mod interfaces;
mod poison;
mod receive;
mod requeue;
mod run_loop;
mod server_data;
mod tracker;
mod wire;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rumqttc::{
    AsyncClient, Event, Incoming, Outgoing, PubAck, PubComp, PubRec, QoS, Request, SubAck,
    SubscribeReasonCode,
};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::driver::{DriverEvent, Link, LostReason};
use super::resume::{Resume, ResumeRecord};
use super::session::{REQUEST_CHANNEL, Session, SessionContext, SessionEnd};
use crate::data::{AstarteValue, encode_individual};
use crate::interface::registry::Registry;
use crate::interface::runtime::LiveRegistry;
use crate::interface::{Interface, Ownership, Retention};
use crate::properties::PropertyStore;
use crate::queue::{Message, Queue};
use crate::router::{Route, Routed, Router, ServerEvent, ServerEvents};
use crate::state::AgentState;
use crate::store::{PropertyRow, Store, StoreOptions};
use crate::tasks::Spawner;
use crate::topic::Topics;
use wire::*;

/// A device-owned datastream: the data the tests queue.
pub const SENSOR: &str = "org.example.Sensor";
/// A server-owned properties interface (routed to the D-Bus signals).
pub const SETTINGS: &str = "org.example.Settings";
/// A device-owned properties interface, with one value set.
pub const STATUS: &str = "org.example.Status";
/// A server-owned datastream a feature owns (as remote commands do).
pub const COMMANDS: &str = "org.example.Commands";
/// The base topic of the test device.
pub const BASE: &str = "test/dev";

pub fn interface(name: &str, kind: &str, ownership: &str, mapping_type: &str) -> Interface {
    let mut mapping = json!({"endpoint": "/%{id}/value", "type": mapping_type});
    if kind == "properties" {
        mapping["allow_unset"] = json!(true);
    }
    let document = json!({
        "interface_name": name,
        "version_major": 1,
        "version_minor": 0,
        "type": kind,
        "ownership": ownership,
        "mappings": [mapping]
    });
    Interface::from_json(&document.to_string()).unwrap()
}

/// The interfaces the device starts with.
pub fn registry() -> Registry {
    Registry::from_interfaces(vec![
        interface(SENSOR, "datastream", "device", "integer"),
        interface(SETTINGS, "properties", "server", "integer"),
        interface(STATUS, "properties", "device", "integer"),
        interface(COMMANDS, "datastream", "server", "string"),
    ])
}

/// One message of [`SENSOR`], told apart from others by its one-byte payload `tag`.
pub fn datum(tag: u8, qos: u8, retention: Retention) -> Message {
    Message {
        seq: 0,
        interface: SENSOR.into(),
        major: 1,
        path: "/a/value".into(),
        payload: vec![tag],
        qos,
        retention,
        expires_at_ms: None,
        is_property: false,
    }
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub context: SessionContext,
    pub link: Link,
    request_tx: flume::Sender<Request>,
    requests: flume::Receiver<Request>,
    state: watch::Receiver<AgentState>,
    pub signals: Mutex<mpsc::Receiver<ServerEvent>>,
    pub commands: Mutex<mpsc::Receiver<Routed>>,
    generation: Cell<u64>,
    next_pkid: Cell<u16>,
}

impl Rig {
    pub fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default())
            .unwrap()
            .store;
        let registry = registry();
        let status = PropertyRow {
            interface: STATUS.into(),
            path: "/a/value".into(),
            ownership: Ownership::Device,
            major: 1,
            payload: encode_individual(&AstarteValue::Integer(7), None).unwrap(),
        };
        let properties = PropertyStore::load(store.clone(), vec![status], &registry);
        let (state, state_rx) = watch::channel(AgentState::Starting);
        let (signals_tx, signals) = mpsc::channel(16);
        let (commands_tx, commands) = mpsc::channel(1);
        let route = Route {
            interfaces: vec![COMMANDS.into()],
            sender: commands_tx,
        };
        let (router, confirmations) = Router::new(ServerEvents::new(signals_tx), vec![route]);
        let context = SessionContext {
            topics: Topics::new("test", "dev"),
            registry: Arc::new(LiveRegistry::new(registry, BTreeSet::new())),
            properties: Arc::new(properties),
            queue: Arc::new(Queue::new(store.sequence(), None)),
            store,
            state,
            router,
            confirmations: tokio::sync::Mutex::new(confirmations),
            network: Spawner::new(CancellationToken::new()),
        };
        let (request_tx, requests) = flume::bounded(REQUEST_CHANNEL);
        Rig {
            dir,
            context,
            link: Link::default(),
            request_tx,
            requests,
            state: state_rx,
            signals: Mutex::new(signals),
            commands: Mutex::new(commands),
            generation: Cell::new(0),
            next_pkid: Cell::new(0),
        }
    }

    /// A session before its first connection, resuming (or not) as `resume` says.
    pub fn session(&self, resume: Resume) -> Session<'_> {
        self.session_with_driver(resume).0
    }

    /// A session, and the channel on which the driver reports to it.
    pub fn session_with_driver(&self, resume: Resume) -> (Session<'_>, mpsc::Sender<DriverEvent>) {
        self.session_recording(resume, None)
    }

    /// A session that records in `record` (for `identity`) that the broker keeps its session
    /// once the handshake finished, as a first start does.
    pub fn session_recording(
        &self,
        resume: Resume,
        record: Option<(ResumeRecord, String)>,
    ) -> (Session<'_>, mpsc::Sender<DriverEvent>) {
        let (events_tx, events) = mpsc::channel(64);
        let client = AsyncClient::from_senders(self.request_tx.clone());
        let session = Session::new(
            &self.context,
            client,
            events,
            self.link.clone(),
            resume,
            record,
        );
        (session, events_tx)
    }

    /// A resumable session, connected to a broker that kept it: ready at once.
    pub fn ready_session(&self) -> Session<'_> {
        let mut session = self.session(Resume::AfterCleanStop);
        self.connect(&mut session, true);
        session
    }

    pub fn state(&self) -> AgentState {
        *self.state.borrow()
    }

    pub async fn until_state(&self, wanted: AgentState) {
        let mut state = self.state.clone();
        state.wait_for(|state| *state == wanted).await.unwrap();
    }

    /// The next message handed to the feature that owns [`COMMANDS`].
    pub async fn next_routed(&self) -> Routed {
        std::future::poll_fn(|context| self.commands.lock().unwrap().poll_recv(context))
            .await
            .unwrap()
    }

    /// Queues a message that lives in memory; it gets its place in line.
    pub fn queue(&self, message: Message) {
        self.context.queue.push(message);
    }

    /// Queues a stored message: on disk first, then in the queue. Returns its place in line.
    pub async fn queue_stored(&self, tag: u8, qos: u8) -> u64 {
        let message = datum(tag, qos, Retention::Stored);
        let seq = self
            .context
            .store
            .append(message.to_stored())
            .await
            .unwrap();
        self.context.queue.push_stored(message.with_seq(seq));
        seq
    }

    /// One event, handled as the run loop handles it.
    pub fn step(&self, session: &mut Session, event: DriverEvent) -> Option<SessionEnd> {
        let end = session.on_event(event);
        session.feed();
        session.flush_delivered();
        end
    }

    /// The broker accepts a new connection (the driver sets the link first).
    pub fn connect(&self, session: &mut Session, session_present: bool) {
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        self.link.set(generation);
        let connected = DriverEvent::Connected {
            generation,
            session_present,
        };
        assert_eq!(self.step(session, connected), None);
    }

    /// The connection drops (the driver clears the link first).
    pub fn lose(&self, session: &mut Session) -> Option<SessionEnd> {
        self.lose_with(session, LostReason::Other("connection reset".into()))
    }

    pub fn lose_with(&self, session: &mut Session, reason: LostReason) -> Option<SessionEnd> {
        self.link.set(0);
        self.step(session, DriverEvent::Lost(reason))
    }

    pub fn incoming(&self, session: &mut Session, packet: Incoming) {
        assert_eq!(self.step(session, mqtt(Event::Incoming(packet))), None);
    }

    pub fn outgoing(&self, session: &mut Session, outgoing: Outgoing) {
        assert_eq!(self.step(session, mqtt(Event::Outgoing(outgoing))), None);
    }

    /// What the session handed to rumqttc since the last look, not written.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.try_iter().collect()
    }

    pub async fn next_request(&self) -> Request {
        self.requests.recv_async().await.unwrap()
    }

    pub fn pkid(&self) -> u16 {
        self.next_pkid.set(self.next_pkid.get() + 1);
        self.next_pkid.get()
    }

    /// rumqttc writes every request waiting in its channel, in order, giving publishes
    /// (QoS 1 and 2) and subscriptions the next packet id, and reports each write.
    pub fn write(&self, session: &mut Session) -> Vec<Written> {
        let requests = self.requests();
        let mut written = Vec::new();
        for request in requests {
            let pkid = match &request {
                Request::Publish(publish) if publish.qos == QoS::AtMostOnce => {
                    self.outgoing(session, Outgoing::Publish(0));
                    0
                }
                Request::Publish(_) => {
                    let pkid = self.pkid();
                    self.outgoing(session, Outgoing::Publish(pkid));
                    pkid
                }
                Request::Subscribe(_) => {
                    let pkid = self.pkid();
                    self.outgoing(session, Outgoing::Subscribe(pkid));
                    pkid
                }
                _ => 0,
            };
            written.push(Written { pkid, request });
        }
        written
    }

    /// The broker acknowledges a written request completely.
    pub fn ack(&self, session: &mut Session, written: &Written) {
        let pkid = written.pkid;
        match &written.request {
            Request::Subscribe(_) => self.incoming(
                session,
                Incoming::SubAck(SubAck::new(
                    pkid,
                    vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
                )),
            ),
            Request::Publish(publish) if publish.qos == QoS::AtLeastOnce => {
                self.incoming(session, Incoming::PubAck(PubAck::new(pkid)))
            }
            Request::Publish(publish) if publish.qos == QoS::ExactlyOnce => {
                self.incoming(session, Incoming::PubRec(PubRec::new(pkid)));
                self.incoming(session, Incoming::PubComp(PubComp::new(pkid)));
            }
            _ => {}
        }
    }

    /// Writes and acknowledges everything, as long as the session hands over more.
    pub fn settle(&self, session: &mut Session) -> Vec<Written> {
        let mut all = Vec::new();
        loop {
            let written = self.write(session);
            if written.is_empty() {
                return all;
            }
            for request in &written {
                self.ack(session, request);
            }
            all.extend(written);
        }
    }

    /// A fresh connection whose handshake completes: the session is ready.
    pub fn handshake(&self, session: &mut Session) -> Vec<Written> {
        self.connect(session, false);
        self.settle(session)
    }

    /// Stops the store (committing what it was told) and reads what it keeps: the sequence
    /// numbers of the queued rows and of the dead letters.
    pub fn stored(self) -> (Vec<u64>, Vec<u64>) {
        self.context.store.clone().close().unwrap();
        let database = rusqlite::Connection::open(self.dir.path().join("agent.db")).unwrap();
        let seqs = |table: &str| -> Vec<u64> {
            let mut statement = database
                .prepare(&format!("SELECT seq FROM {table} ORDER BY seq"))
                .unwrap();
            statement
                .query_map([], |row| row.get::<_, i64>(0))
                .unwrap()
                .map(|seq| u64::try_from(seq.unwrap()).unwrap())
                .collect()
        };
        (seqs("queue"), seqs("dead_letters"))
    }
}

pub fn mqtt(event: Event) -> DriverEvent {
    DriverEvent::Mqtt(event)
}
