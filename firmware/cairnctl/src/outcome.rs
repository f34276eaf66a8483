//! How the lifecycle commands end: their exit statuses (0 done, 2 refused or bad input, 1 a
//! failure of the box or no answer from it), a change handed to the daemon's lifecycle thread
//! and its answer told, and JSON output.

use cairn_lifecycle::requests::{self, Request};
use cairn_lifecycle::LifecycleError;
use cairn_store::DataDir;
use std::time::Duration;

/// Exit status for bad input or a refusal.
pub const REFUSED: i32 = 2;
/// Exit status for a failure of the box (or no answer from it).
pub const FAILED: i32 = 1;

/// Hand a change to the daemon's lifecycle thread and say what it answered.
pub fn ask(data: &DataDir, req: &Request, timeout: u64) -> i32 {
    match requests::send(data.root(), req, Duration::from_secs(timeout)) {
        Ok(a) if a.ok => {
            println!("{}", a.message);
            0
        }
        Ok(a) if a.failed => {
            eprintln!("cairnctl: nothing was changed: {}", a.message);
            FAILED
        }
        Ok(a) => refused(&a.message),
        Err(e) => {
            eprintln!("cairnctl: nothing was changed: {e}");
            FAILED
        }
    }
}

/// Say why the request was refused; the exit status for it.
pub fn refused(message: &str) -> i32 {
    eprintln!("cairnctl: {message}");
    REFUSED
}

/// Say what went wrong; 2 when the caller asked for something impossible, 1 otherwise.
pub fn failed(e: &LifecycleError) -> i32 {
    eprintln!("cairnctl: {e}");
    if e.is_bad_input() {
        REFUSED
    } else {
        FAILED
    }
}

/// Print `value` as pretty JSON; the exit status.
pub fn print_json<T: serde::Serialize>(value: &T) -> i32 {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("cairnctl: {e}");
            FAILED
        }
    }
}
