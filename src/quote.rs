//! How error messages quote what a client sent: a short prefix, with the full length said,
//! so that a message never echoes a large input (gRPC carries it in a header).

/// Longest text of a client's input an error message quotes.
pub const QUOTED_BYTES_MAX: usize = 64;
/// Longest error message sent to a client: gRPC carries it in a header, and one that echoes
/// a large input would break the answer itself.
pub const STATUS_MESSAGE_BYTES_MAX: usize = 1024;

/// `text` as an error quotes it: in `{:?}` form, cut after [`QUOTED_BYTES_MAX`] bytes with
/// the total length said.
pub fn quoted(text: &str) -> String {
    if text.len() <= QUOTED_BYTES_MAX {
        return format!("{text:?}");
    }
    format!("{:?}… ({} bytes)", cut(text, QUOTED_BYTES_MAX), text.len())
}

/// The longest prefix of `text` of at most `bytes` bytes that ends on a character boundary.
fn cut(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An error message as sent: at most [`STATUS_MESSAGE_BYTES_MAX`] bytes.
pub fn bounded_message(message: String) -> String {
    if message.len() <= STATUS_MESSAGE_BYTES_MAX {
        return message;
    }
    format!(
        "{}… (message cut at {STATUS_MESSAGE_BYTES_MAX} bytes)",
        cut(&message, STATUS_MESSAGE_BYTES_MAX)
    )
}
