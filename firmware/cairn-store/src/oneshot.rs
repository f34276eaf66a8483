//! A one-value channel whose receiver sleeps at once.
//!
//! The writer answers each request once, about a disk flush later. A general channel spins
//! and yields the CPU in a loop before it sleeps; on a two-core box with four associations
//! that spinning takes CPU from the clients and the other receivers.

use std::sync::{Arc, Condvar, Mutex};

struct Slot<T> {
    value: Option<T>,
    sender_gone: bool,
}

struct Shared<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
}

/// The sending half: `send` consumes it; dropping it unsent wakes the receiver with an error.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// The sender went away without sending.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Gone;

/// A new channel for one value.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot {
            value: None,
            sender_gone: false,
        }),
        ready: Condvar::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Hand over the value and wake the receiver (if it is still there).
    pub(crate) fn send(self, value: T) {
        if let Ok(mut slot) = self.shared.slot.lock() {
            slot.value = Some(value);
        }
        // Drop wakes the receiver.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.shared.slot.lock() {
            slot.sender_gone = true;
        }
        self.shared.ready.notify_one();
    }
}

impl<T> Receiver<T> {
    /// Wait for the value; `Gone` when the sender was dropped without sending.
    pub(crate) fn recv(self) -> Result<T, Gone> {
        let mut slot = self.shared.slot.lock().map_err(|_| Gone)?;
        loop {
            if let Some(v) = slot.value.take() {
                return Ok(v);
            }
            if slot.sender_gone {
                return Err(Gone);
            }
            slot = self.shared.ready.wait(slot).map_err(|_| Gone)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_crosses_threads() {
        let (tx, rx) = channel();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(42u32);
        });
        assert_eq!(rx.recv(), Ok(42));
        t.join().unwrap();
    }

    #[test]
    fn dropped_sender_is_an_error() {
        let (tx, rx) = channel::<u32>();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(tx);
        });
        assert_eq!(rx.recv(), Err(Gone));
        t.join().unwrap();
        let (tx, rx) = channel::<u32>();
        tx.send(7);
        assert_eq!(rx.recv(), Ok(7));
    }
}
