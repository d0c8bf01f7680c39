//! Caller-supplied request ids (`x-request-id`): accepted when short and plain, so they are safe
//! to store, search and echo; otherwise the data plane generates one.

/// The longest request id accepted from a caller.
pub const MAX_LEN: usize = 128;

/// Whether a caller's request id can be used as is.
pub fn is_acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let long = "a".repeat(MAX_LEN + 1);
        let max = "a".repeat(MAX_LEN);
        let cases: &[(&str, bool)] = &[
            ("", false),
            ("req-123", true),
            ("0af7651916cd43dd8448eb211c80319c", true),
            ("trace:abc/def_1.2", true),
            ("has space", false),
            ("new\nline", false),
            ("ünïcode", false),
            ("<script>", false),
            (&max, true),
            (&long, false),
        ];
        for (input, want) in cases {
            assert_eq!(is_acceptable(input), *want, "{input:?}");
        }
    }
}
