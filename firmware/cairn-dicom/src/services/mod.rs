//! The DIMSE services on an accepted association, each adding its methods to
//! [`crate::association::Association`]: C-STORE (`store.rs`), C-FIND (`find.rs`), C-GET and
//! C-MOVE (`retrieve/`), what the three query/retrieve services share (`query.rs`), and
//! storage commitment's exchange on the association (`commitment.rs`). C-ECHO is answered by
//! the session itself. `session.rs` dispatches to them; no service calls another.

pub(crate) mod commitment;
pub(crate) mod find;
pub(crate) mod query;
pub(crate) mod retrieve;
pub(crate) mod store;
