//! The signature trailer of a compliance report: the SHA-256 of the report's body and the
//! audit row that recorded it, attached where the format allows (after a Markdown rule,
//! in a closing HTML comment, as a last `signature` member of the JSON object) and
//! detached again exactly, so `compliance verify` hashes the very bytes that were signed.

use crate::cli_compliance::ReportFormat;

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

const MD_MARK: &str = "\n---\n\nSigned: Stockade audit row #";
const HTML_MARK: &str = "<!-- Signed: Stockade audit row #";
const JSON_MARK: &str = ",\n  \"signature\": {\n    \"audit_seq\": ";
/// What a JSON body ends with (serde_json's pretty object and a newline).
const JSON_END: &str = "\n}\n";

fn trailer(format: ReportFormat, seq: i64, hash: &str) -> String {
    match format {
        ReportFormat::Md => format!(
            "{MD_MARK}{seq}, SHA-256 {hash} of everything above the line. Check it with `stockade compliance verify FILE`.\n"
        ),
        ReportFormat::Html => format!(
            "{HTML_MARK}{seq}, SHA-256 {hash} of everything before this comment. Check it with: stockade compliance verify FILE -->\n"
        ),
        ReportFormat::Json => format!(
            "{JSON_MARK}{seq},\n    \"sha256\": \"{hash}\",\n    \"covers\": \"this document without its signature member\"\n  }}"
        ),
    }
}

/// The signed document.
pub fn attach(body: &str, format: ReportFormat, seq: i64, hash: &str) -> String {
    let t = trailer(format, seq, hash);
    match format {
        ReportFormat::Json => match body.strip_suffix(JSON_END) {
            Some(head) => format!("{head}{t}{JSON_END}"),
            None => format!("{body}{t}"),
        },
        _ => format!("{body}{t}"),
    }
}

/// A signed document taken apart.
#[derive(Debug)]
pub struct Detached {
    pub body: String,
    pub seq: i64,
    pub hash: String,
    pub format: ReportFormat,
}

/// The body, audit seq and hash of a signed document; `None` when it has no trailer of
/// the exact shape `attach` writes (an altered trailer included).
pub fn detach(text: &str) -> Option<Detached> {
    for (format, mark) in [
        (ReportFormat::Md, MD_MARK),
        (ReportFormat::Html, HTML_MARK),
        (ReportFormat::Json, JSON_MARK),
    ] {
        let Some(at) = text.rfind(mark) else { continue };
        let rest = &text[at + mark.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(seq) = digits.parse::<i64>() else {
            continue;
        };
        let hash_at = match format {
            ReportFormat::Json => rest.find("\"sha256\": \"").map(|i| i + 11),
            _ => rest.find("SHA-256 ").map(|i| i + 8),
        };
        let Some(hash) = hash_at.and_then(|i| rest.get(i..i + 64)) else {
            continue;
        };
        if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let head = &text[..at];
        let body = match format {
            ReportFormat::Json => format!("{head}{JSON_END}"),
            _ => head.to_owned(),
        };
        // The trailer must be exactly what signing wrote, and nothing may follow it.
        if attach(&body, format, seq, hash) != text {
            continue;
        }
        return Some(Detached {
            body,
            seq,
            hash: hash.to_owned(),
            format,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn attach_then_detach_gives_the_body_back() {
        let hash = "ab".repeat(32);
        for (format, body) in [
            (ReportFormat::Md, "# Report\n\n| a |\n"),
            (ReportFormat::Html, "<!doctype html><p>x</p></html>\n"),
            (ReportFormat::Json, "{\n  \"a\": 1\n}\n"),
        ] {
            let signed = attach(body, format, 42, &hash);
            let d = detach(&signed).unwrap();
            assert_eq!((d.body.as_str(), d.seq, d.format), (body, 42, format));
            assert_eq!(d.hash, hash);
            if format == ReportFormat::Json {
                let v: serde_json::Value = serde_json::from_str(&signed).unwrap();
                assert_eq!(v["signature"]["audit_seq"], 42);
            }
            // Text after the trailer: no signature.
            assert!(detach(&format!("{signed}extra")).is_none());
        }
        assert!(detach("just some text").is_none());
        assert_eq!(sha256_hex(b"").len(), 64);
    }
}
