//! A message the broker refuses must not wedge the queue. Astarte closes the connection on
//! data it cannot accept; after a reconnection the same message would be first in line again.
//! When the connection is lost [`POISON_THRESHOLD`] times in a row while the same message is
//! the oldest one unacknowledged, that message is set aside: stored ones move to the store's
//! dead-letter table, others are dropped, each with a log line naming the topic. The next
//! connection starts a clean MQTT session so the broker cannot hand it back either.

use super::session::Session;
use crate::queue::Message;

/// Consecutive losses with the same oldest unacknowledged message that condemn it.
pub const POISON_THRESHOLD: u32 = 3;

#[derive(Debug, Default)]
pub struct Suspect {
    /// The oldest unacknowledged message at the last losses, and how many in a row.
    current: Option<(u64, u32)>,
    /// Condemned: set aside when the unfinished messages are taken back.
    condemned: Option<u64>,
}

impl Suspect {
    /// The broker acknowledged `seq`: it was not the culprit.
    pub fn cleared(&mut self, seq: u64) {
        if self.current.is_some_and(|(suspect, _)| suspect == seq) {
            self.current = None;
        }
    }

    /// The connection dropped while `oldest` was the oldest unacknowledged message. Returns
    /// true when it is now condemned.
    fn lost_with(&mut self, oldest: Option<u64>) -> bool {
        let Some(oldest) = oldest else {
            self.current = None;
            return false;
        };
        let count = match self.current {
            Some((seq, count)) if seq == oldest => count + 1,
            _ => 1,
        };
        if count >= POISON_THRESHOLD {
            self.current = None;
            self.condemned = Some(oldest);
            return true;
        }
        self.current = Some((oldest, count));
        false
    }
}

impl Session<'_> {
    /// Called when a connection that carried data was lost.
    pub(super) fn suspect_oldest_unacknowledged(&mut self) {
        if self.suspect.lost_with(self.tracker.oldest_written_data()) {
            // A resumed session would make rumqttc send it again: start the next one clean.
            self.link.request_clean_session();
        }
    }

    /// Removes a condemned message from the ones taken back after a lost session.
    pub(super) fn set_aside_poison(&mut self, mut unfinished: Vec<Message>) -> Vec<Message> {
        let Some(seq) = self.suspect.condemned.take() else {
            return unfinished;
        };
        if let Some(index) = unfinished.iter().position(|message| message.seq == seq) {
            let message = unfinished.remove(index);
            let topic = self.context.topics.data(&message.interface, &message.path);
            if message.is_stored() {
                self.context.store.dead_letter(seq);
                tracing::error!(%topic, seq, "the broker closed the connection right after this message {POISON_THRESHOLD} times in a row: moved it to the store's dead_letters table (is the interface installed in the realm, and does the value match it?)");
            } else {
                tracing::error!(%topic, seq, "the broker closed the connection right after this message {POISON_THRESHOLD} times in a row: dropped it (is the interface installed in the realm, and does the value match it?)");
            }
        }
        unfinished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_oldest_message_at_consecutive_losses_is_condemned() {
        let mut suspect = Suspect::default();
        assert!(!suspect.lost_with(Some(7)));
        assert!(!suspect.lost_with(Some(7)));
        assert!(suspect.lost_with(Some(7)));
        assert_eq!(suspect.condemned, Some(7));
    }

    #[test]
    fn an_acknowledged_or_different_message_resets_the_count() {
        let mut suspect = Suspect::default();
        suspect.lost_with(Some(7));
        suspect.lost_with(Some(7));
        suspect.cleared(7);
        assert!(!suspect.lost_with(Some(7)));
        assert!(!suspect.lost_with(Some(8)));
        assert!(!suspect.lost_with(Some(8)));
        assert!(!suspect.lost_with(None));
        assert_eq!(suspect.condemned, None);
    }
}
