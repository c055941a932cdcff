//! The compact form of a JSON document: insignificant whitespace removed, everything else
//! (key order, escapes, number spelling) kept byte for byte. This is what eBay's signer
//! (Jackson without pretty printing) produces from a parsed notification.

/// Remove JSON whitespace (space, tab, CR, LF) outside strings. `None` when the input
/// ends inside a string. The input is not otherwise validated.
pub fn compact_json(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in input {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'"' => {
                    in_string = true;
                    out.push(b);
                }
                _ => out.push(b),
            }
        }
    }
    (!in_string).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::compact_json;

    #[test]
    fn strips_only_outside_strings() {
        let pretty = b"{\n  \"a b\" : [ 1 , \"x \\\" y\" ],\r\n\t\"c\":true }";
        assert_eq!(
            compact_json(pretty).as_deref(),
            Some(&b"{\"a b\":[1,\"x \\\" y\"],\"c\":true}"[..])
        );
        assert_eq!(compact_json(b"\"open"), None);
        assert_eq!(compact_json(b"").as_deref(), Some(&b""[..]));
    }
}
