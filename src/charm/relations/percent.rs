//! Percent-encoding of URL parts (RFC 3986 §2.1), for the URLs the charm
//! builds from relation data: `DATABASE_URL` (§3(a) of the reference,
//! "build `postgresql://user:pass@host:port/db` with URL-encoding") and
//! `MONGO_URL` (§3(b)).
//!
//! We encode every byte outside RFC 3986's *unreserved* set
//! (`A-Z a-z 0-9 - . _ ~`), in every component. RFC 3986 would let
//! sub-delimiters (`!$&'()*+,;=`) and `:` through in userinfo and path, but
//! the consumers of these URLs (SQLAlchemy, dj-database-url, psycopg, the
//! MongoDB drivers) each split URLs with their own ad-hoc rules, and an
//! encoded octet means the same data to all of them while a raw `;` or `+`
//! does not. Encoding more than needed is always valid; encoding less is how
//! passwords with `@` broke the old charms.

/// Whether `byte` may appear unencoded: RFC 3986's unreserved set.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Encode `text` for use as one URL component (user, password, path segment,
/// query value): every byte outside the unreserved set becomes `%XX`, with
/// upper-case hex as RFC 3986 §2.1 recommends. Multi-byte UTF-8 characters
/// are encoded byte by byte, as RFC 3986 §2.5 says.
pub fn encode_component(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if is_unreserved(byte) {
            encoded.push(byte as char);
        } else {
            encoded.push('%');
            encoded.push(HEX[usize::from(byte >> 4)] as char);
            encoded.push(HEX[usize::from(byte & 0x0f)] as char);
        }
    }
    encoded
}

/// Decode `%XX` escapes back into text. `None` when an escape is malformed
/// or the decoded bytes are not UTF-8. The charm itself never needs this;
/// it is here so tests (and logs that show a redacted URL) can check that an
/// encoded part reads back as the original.
pub fn decode_component(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_characters_and_spaces_are_encoded() {
        assert_eq!(
            encode_component("p@ss:w/o%rd?#[] x"),
            "p%40ss%3Aw%2Fo%25rd%3F%23%5B%5D%20x"
        );
        assert_eq!(encode_component("plain-Name_1.~"), "plain-Name_1.~");
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    #[test]
    fn decoding_inverts_encoding_and_refuses_broken_escapes() {
        let original = "a b@c:d/e%f";
        assert_eq!(
            decode_component(&encode_component(original)).as_deref(),
            Some(original)
        );
        assert_eq!(decode_component("%4"), None);
        assert_eq!(decode_component("%zz"), None);
        assert_eq!(decode_component("%FF"), None, "a lone 0xFF is not UTF-8");
    }
}
