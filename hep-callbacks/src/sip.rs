//! Just enough SIP to filter on: the request method of a payload.

/// The request method of a SIP message (`INVITE`, `REGISTER` ...), or `None` for a
/// response or something that is not SIP.
///
/// ```
/// assert_eq!(hep_callbacks::sip::method(b"OPTIONS sip:a@b SIP/2.0\r\n"), Some(&b"OPTIONS"[..]));
/// assert_eq!(hep_callbacks::sip::method(b"SIP/2.0 200 OK\r\n"), None);
/// ```
pub fn method(payload: &[u8]) -> Option<&[u8]> {
    let end = payload.iter().take(32).position(|&b| b == b' ')?;
    let token = &payload[..end];
    let is_token = !token.is_empty()
        && token
            .iter()
            .all(|b| b.is_ascii_alphabetic() || *b == b'-' || *b == b'_');
    // "SIP/2.0" has a '/' and so is not a method token.
    is_token.then_some(token)
}
