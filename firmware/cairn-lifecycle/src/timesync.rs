//! Whether the kernel believes its clock is synchronised (an NTP daemon or a time server has
//! set it and keeps it), asked with `adjtimex(2)` in read-only mode: `STA_UNSYNC` clear and
//! no `TIME_ERROR`. The one `unsafe` of this crate is that call.
#![allow(unsafe_code)]

/// `true` when the kernel's clock is synchronised, `false` when it says it is not; an error
/// when the kernel cannot be asked.
pub fn kernel_clock_synchronised() -> std::io::Result<bool> {
    // SAFETY: an all-zero `timex` is a valid value (plain integers); with `modes` 0
    // adjtimex only fills it in and changes nothing.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    // SAFETY: `tx` is a valid, exclusively borrowed `timex` for the duration of the call.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_answers() {
        // whatever this machine's state, the call itself works without privileges
        assert!(super::kernel_clock_synchronised().is_ok());
    }
}
