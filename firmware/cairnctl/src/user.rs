//! Who is at the terminal, as the daemon records it in the audit trail.

/// `user:<login name>`: the person who ran `sudo cairnctl ...`, else the login user, else `cli`.
pub fn who() -> String {
    format!(
        "user:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "cli".into())
    )
}
