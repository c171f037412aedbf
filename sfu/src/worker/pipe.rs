//! In-process pipes between workers (`pipe_to_router`): a producer of one
//! worker made consumable on a router of another. Each packet crosses once,
//! already decrypted and in the source router's namespace, as one message
//! to the target worker's inbox; it is encrypted per consumer on the thread
//! that owns the consumer's transport. Key frame requests travel back the
//! same way; pauses and closes travel forward.

use std::sync::mpsc;
use std::sync::Arc;

use crate::ids::ProducerId;

/// A message between workers, addressed to an object of the receiver.
#[derive(Debug)]
pub(crate) enum PipeMessage {
    /// A packet for the receiver's pipe producer.
    Rtp {
        producer: ProducerId,
        packet: Vec<u8>,
    },
    ProducerPaused {
        producer: ProducerId,
        paused: bool,
    },
    ProducerClosed {
        producer: ProducerId,
    },
    /// The receiver's (source) producer should send a key frame.
    KeyFrameRequest {
        producer: ProducerId,
        encoding: Option<usize>,
    },
}

/// Where to send a worker its pipe messages.
#[derive(Clone)]
pub(crate) struct PipeInbox {
    tx: mpsc::Sender<PipeMessage>,
    waker: Arc<mio::Waker>,
}

impl PipeInbox {
    pub(crate) fn new(tx: mpsc::Sender<PipeMessage>, waker: Arc<mio::Waker>) -> Self {
        Self { tx, waker }
    }

    /// Sends and wakes the receiving worker; false once it has stopped.
    pub(crate) fn send(&self, message: PipeMessage) -> bool {
        self.tx.send(message).is_ok() && self.waker.wake().is_ok()
    }
}
