//! The transfer rate of the message being received, against `min_transfer_bytes_per_sec`.

use cairn_config::Config;

/// The transfer rate of the message being received, measured over windows of
/// `transfer_rate_window_secs`: a peer that trickles a message (a few bytes now and then, each
/// PDU well within ARTIM) is aborted at the end of the first window that brought less than
/// `min_transfer_bytes_per_sec` on average.
pub(super) struct RateWindow {
    min_per_sec: u64,
    length: std::time::Duration,
    /// Start of the current window and the bytes received in it, while a message arrives.
    current: Option<(std::time::Instant, u64)>,
}

impl RateWindow {
    pub(super) fn new(config: &Config) -> Self {
        Self {
            min_per_sec: config.dicom.min_transfer_bytes_per_sec,
            length: std::time::Duration::from_secs(config.dicom.transfer_rate_window_secs.max(1)),
            current: None,
        }
    }

    /// No message in progress.
    pub(super) fn stop(&mut self) {
        self.current = None;
    }

    /// Time left in the current window (one starts now if none runs); None when off.
    pub(super) fn time_left(&mut self) -> Option<std::time::Duration> {
        if self.min_per_sec == 0 {
            return None;
        }
        let (start, _) = *self
            .current
            .get_or_insert_with(|| (std::time::Instant::now(), 0));
        Some(self.length.saturating_sub(start.elapsed()))
    }

    pub(super) fn received(&mut self, bytes: usize) {
        if let Some((_, n)) = &mut self.current {
            *n += bytes as u64;
        }
    }

    /// At the end of a window: too slow is an error; else the next window starts.
    pub(super) fn check(&mut self) -> Result<(), TooSlow> {
        let Some((start, bytes)) = self.current else {
            return Ok(());
        };
        if start.elapsed() < self.length {
            return Ok(());
        }
        let wanted = self.min_per_sec.saturating_mul(self.length.as_secs());
        if bytes < wanted {
            return Err(TooSlow {
                bytes,
                secs: self.length.as_secs(),
            });
        }
        self.current = Some((std::time::Instant::now(), 0));
        Ok(())
    }
}

/// A message that arrived slower than `min_transfer_bytes_per_sec` over one window.
#[derive(Debug, thiserror::Error)]
#[error("message arrives slower than min_transfer_bytes_per_sec ({bytes} bytes in {secs} s)")]
pub(super) struct TooSlow {
    bytes: u64,
    secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trickle_fails_its_window_and_a_steady_stream_passes() {
        let text = "[dicom]\nae_title = \"CAIRN\"\nmin_transfer_bytes_per_sec = 100\n\
                    transfer_rate_window_secs = 1\n[store]\ndata_dir = \"/d\"\n";
        let config = Config::parse(text, std::path::Path::new("t")).unwrap();
        let mut rate = RateWindow::new(&config);
        let left = rate.time_left().unwrap();
        assert!(left <= std::time::Duration::from_secs(1));
        rate.received(10);
        assert!(rate.check().is_ok(), "a window still open");
        // the window closes with 10 of 100 bytes
        rate.current = rate
            .current
            .map(|(t, n)| (t - std::time::Duration::from_secs(2), n));
        let e = rate.check().unwrap_err().to_string();
        assert!(e.contains("10 bytes in 1 s"), "{e}");
        // enough bytes: the next window starts
        rate.stop();
        rate.time_left();
        rate.received(100);
        rate.current = rate
            .current
            .map(|(t, n)| (t - std::time::Duration::from_secs(2), n));
        assert!(rate.check().is_ok());
        assert_eq!(rate.current.map(|(_, n)| n), Some(0));
        // off
        let mut off = RateWindow {
            min_per_sec: 0,
            ..RateWindow::new(&config)
        };
        assert_eq!(off.time_left(), None);
        assert!(off.check().is_ok());
    }
}
