//! What clients and nodes exchange over Arrow Flight (DESIGN §4), defined once for both: the
//! node's Flight service (`flight`) and the Rust client (`client`) use this module, and
//! neither reaches into the other. Durability levels are in [`crate::durability`].

pub mod ack;
mod encode;
mod ticket;

pub use encode::BatchEncoder;
pub use ticket::{ReadTicket, STATUS_TICKET, TICKET_BYTES_MAX};

/// Call header choosing the level a write session waits for (a `Level` name).
pub const ACK_UNTIL_HEADER: &str = "x-arka-ack-until";

/// Call header asking for watermark rows on the ack stream (`true` / `false`).
pub const WATERMARKS_HEADER: &str = "x-arka-watermarks";

/// Trailer naming the leader's Flight location on a redirect (`UNAVAILABLE`).
pub const LEADER_TRAILER: &str = "x-arka-leader";

/// The message of the `UNAUTHENTICATED` status of an expired bearer token; a client that
/// holds the user's password signs in again when it sees it.
pub const TOKEN_EXPIRED: &str = "the bearer token has expired: sign in again (Handshake)";
