//! Where the session stands with the broker, as a type: each phase owns its data, and a
//! transition is a function from one phase to the next.
//!
//! ```text
//!            connected, no session (or one never synced)
//!   Down ────────────────────────────────────────────▶ Handshaking ──handshake done──▶ Ready
//!    ▲  ╲              connected, synced session present                                │
//!    │   ╲────────────────────────────────────────────────────────────────────────────▶│
//!    └──────────────────────────── lost (from any phase) ◀──────────────────────────────┘
//! ```

use std::collections::VecDeque;

use super::handshake::Step;

#[derive(Debug, PartialEq)]
pub enum Phase {
    /// No connection.
    Down {
        /// The broker's session for this device went through a complete handshake (in this
        /// process, or in one that stopped cleanly before it): finding it present on the
        /// next connection, the handshake is skipped.
        synced: bool,
        /// The interfaces changed while down: a resumed session must announce them.
        interfaces_changed: bool,
    },
    /// Connection `generation` is up; the handshake runs. `steps` are not yet handed to
    /// rumqttc; queued data waits.
    Handshaking {
        generation: u64,
        steps: VecDeque<Step>,
    },
    /// Connection `generation` is up and the broker's session is synced: queued data flows.
    /// `announce` holds the steps of an interface change, sent ahead of further data.
    Ready {
        generation: u64,
        announce: VecDeque<Step>,
    },
}

/// What the phase asks of the session when a connection comes up.
#[derive(Debug, PartialEq, Eq)]
pub enum OnConnect {
    /// The synced session was resumed: nothing to redo.
    Resumed,
    /// The broker kept the session but its handshake never finished: run it again.
    Resync,
    /// The broker has no session: whatever was in flight is gone; take it back, and run
    /// the full handshake.
    Fresh,
}

impl Phase {
    /// The phase before the first connection: `resumable` when the previous process left
    /// the broker's session synced and nothing half-done.
    pub fn start(resumable: bool) -> Phase {
        Phase::Down {
            synced: resumable,
            interfaces_changed: false,
        }
    }

    /// The broker accepted connection `generation`, with or without the device's session.
    /// Returns the next phase and what the session must do. `handshake` builds the full
    /// handshake; `announce` the steps announcing changed interfaces.
    pub fn connected(
        self,
        generation: u64,
        session_present: bool,
        handshake: impl FnOnce() -> VecDeque<Step>,
        announce: impl FnOnce() -> VecDeque<Step>,
    ) -> (Phase, OnConnect) {
        let (synced, interfaces_changed) = match self {
            Phase::Down {
                synced,
                interfaces_changed,
            } => (synced, interfaces_changed),
            // A connection the session never heard was lost: treat it as lost first.
            other => match other.lost() {
                Phase::Down {
                    synced,
                    interfaces_changed,
                } => (synced, interfaces_changed),
                _ => (false, false),
            },
        };
        match (session_present, synced) {
            (true, true) => {
                let announce = if interfaces_changed {
                    announce()
                } else {
                    VecDeque::new()
                };
                (
                    Phase::Ready {
                        generation,
                        announce,
                    },
                    OnConnect::Resumed,
                )
            }
            (present, _) => (
                Phase::Handshaking {
                    generation,
                    steps: handshake(),
                },
                if present {
                    OnConnect::Resync
                } else {
                    OnConnect::Fresh
                },
            ),
        }
    }

    /// The connection is gone. A session that was synced stays synced in the broker; one
    /// whose handshake did not finish must run it again; pending announcements are redone.
    pub fn lost(self) -> Phase {
        match self {
            Phase::Down { .. } => self,
            Phase::Handshaking { .. } => Phase::Down {
                synced: false,
                interfaces_changed: false,
            },
            Phase::Ready { announce, .. } => Phase::Down {
                synced: true,
                interfaces_changed: !announce.is_empty(),
            },
        }
    }

    /// The handshake's last step is acknowledged: data may flow.
    pub fn handshake_done(self) -> Phase {
        match self {
            Phase::Handshaking { generation, steps } if steps.is_empty() => Phase::Ready {
                generation,
                announce: VecDeque::new(),
            },
            other => other,
        }
    }

    /// The interfaces changed: announce them as soon as the session can.
    pub fn interfaces_changed(&mut self, announce: impl FnOnce() -> VecDeque<Step>) {
        match self {
            Phase::Down {
                interfaces_changed, ..
            } => *interfaces_changed = true,
            Phase::Handshaking { steps, .. } => steps.extend(announce()),
            Phase::Ready {
                announce: queued, ..
            } => queued.extend(announce()),
        }
    }

    /// The connection this phase belongs to.
    pub fn generation(&self) -> Option<u64> {
        match self {
            Phase::Down { .. } => None,
            Phase::Handshaking { generation, .. } | Phase::Ready { generation, .. } => {
                Some(*generation)
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Phase::Ready { .. })
    }

    /// Connected, handshaking or ready.
    pub fn is_up(&self) -> bool {
        !matches!(self, Phase::Down { .. })
    }

    /// Whether a later process may resume the broker's session as it is now.
    pub fn is_synced(&self) -> bool {
        match self {
            Phase::Down {
                synced,
                interfaces_changed,
            } => *synced && !*interfaces_changed,
            Phase::Handshaking { .. } => false,
            Phase::Ready { announce, .. } => announce.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str) -> Step {
        Step::Publish {
            topic: name.into(),
            payload: Vec::new(),
        }
    }

    fn handshake() -> VecDeque<Step> {
        VecDeque::from([step("handshake")])
    }

    fn announce() -> VecDeque<Step> {
        VecDeque::from([step("announce")])
    }

    #[test]
    fn a_first_connection_without_a_resumable_session_runs_the_handshake() {
        let (phase, todo) = Phase::start(false).connected(1, false, handshake, announce);
        assert_eq!(todo, OnConnect::Fresh);
        assert_eq!(
            phase,
            Phase::Handshaking {
                generation: 1,
                steps: handshake()
            }
        );
    }

    #[test]
    fn a_synced_session_found_present_is_resumed_without_a_handshake() {
        let (phase, todo) = Phase::start(true).connected(3, true, handshake, announce);
        assert_eq!(todo, OnConnect::Resumed);
        assert_eq!(
            phase,
            Phase::Ready {
                generation: 3,
                announce: VecDeque::new()
            }
        );
    }

    #[test]
    fn a_present_session_whose_handshake_never_finished_is_synced_again() {
        let (phase, _) = Phase::start(false).connected(1, false, handshake, announce);
        let phase = phase.lost();
        assert_eq!(
            phase,
            Phase::Down {
                synced: false,
                interfaces_changed: false
            }
        );
        let (phase, todo) = phase.connected(2, true, handshake, announce);
        assert_eq!(todo, OnConnect::Resync);
        assert!(matches!(phase, Phase::Handshaking { generation: 2, .. }));
    }

    #[test]
    fn a_lost_session_runs_the_handshake_even_when_it_was_synced() {
        let (phase, todo) = Phase::start(true).connected(1, false, handshake, announce);
        assert_eq!(todo, OnConnect::Fresh);
        assert!(matches!(phase, Phase::Handshaking { .. }));
    }

    #[test]
    fn the_handshake_ends_in_ready_only_when_every_step_was_handed_over() {
        let (phase, _) = Phase::start(false).connected(1, false, handshake, announce);
        let phase = phase.handshake_done();
        assert!(!phase.is_ready(), "a step is still waiting");
        let Phase::Handshaking { generation, .. } = phase else {
            panic!("still handshaking")
        };
        let phase = Phase::Handshaking {
            generation,
            steps: VecDeque::new(),
        }
        .handshake_done();
        assert_eq!(
            phase,
            Phase::Ready {
                generation: 1,
                announce: VecDeque::new()
            }
        );
        assert!(phase.is_synced());
    }

    #[test]
    fn interfaces_changed_while_down_are_announced_when_the_session_resumes() {
        let mut phase = Phase::start(true);
        phase.interfaces_changed(announce);
        assert!(!phase.is_synced(), "the broker has the old introspection");
        let (phase, todo) = phase.connected(1, true, handshake, announce);
        assert_eq!(todo, OnConnect::Resumed);
        assert_eq!(
            phase,
            Phase::Ready {
                generation: 1,
                announce: announce()
            }
        );
    }

    #[test]
    fn interfaces_changed_while_up_are_queued_behind_the_current_steps() {
        let (mut phase, _) = Phase::start(false).connected(1, false, handshake, announce);
        phase.interfaces_changed(announce);
        let Phase::Handshaking { steps, .. } = &phase else {
            panic!("handshaking")
        };
        assert_eq!(
            steps,
            &VecDeque::from([step("handshake"), step("announce")])
        );

        let mut ready = Phase::Ready {
            generation: 2,
            announce: VecDeque::new(),
        };
        ready.interfaces_changed(announce);
        assert!(!ready.is_synced());
        let down = ready.lost();
        assert_eq!(
            down,
            Phase::Down {
                synced: true,
                interfaces_changed: true
            },
            "an announcement lost with the connection is made again"
        );
    }

    #[test]
    fn generations_belong_to_connected_phases_only() {
        assert_eq!(Phase::start(true).generation(), None);
        assert!(!Phase::start(true).is_up());
        let (phase, _) = Phase::start(true).connected(7, true, handshake, announce);
        assert_eq!(phase.generation(), Some(7));
        assert!(phase.is_up());
        assert_eq!(phase.lost().generation(), None);
    }

    #[test]
    fn a_connection_reported_twice_is_handled_as_a_loss_then_a_connection() {
        let (phase, _) = Phase::start(true).connected(1, true, handshake, announce);
        let (phase, todo) = phase.connected(2, true, handshake, announce);
        assert_eq!(todo, OnConnect::Resumed);
        assert_eq!(phase.generation(), Some(2));
    }
}
