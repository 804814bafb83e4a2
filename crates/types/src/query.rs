//! Query strings: components percent-encoded and decoded (the
//! `percent-encoding` crate's), as `faas` writes them and the API reads
//! them.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// All but RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes a query component.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

/// `application/x-www-form-urlencoded` decoding of a component (`+` is a
/// space). `None` if a `%` is not followed by two hex digits (the crate
/// would pass it through; the API refuses it) or the bytes are not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let escapes_whole = b
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c == b'%')
        .all(|(i, _)| b.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)));
    if !escapes_whole {
        return None;
    }
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8().ok().map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_broken_escapes() {
        for s in ["", "plain", "a b+c", "2025-01-01T10:00:00+01:00", "ünïcode/&=?#%"] {
            assert_eq!(decode(&encode(s)).as_deref(), Some(s), "{s}");
        }
        assert_eq!(encode("a b/c~d"), "a%20b%2Fc~d");
        assert_eq!(decode("a+b%2B").as_deref(), Some("a b+"));
        for bad in ["%", "%2", "%zz", "a%g1", "%FF"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
