//! The scrubber for third-party free text in alerts.
//!
//! Error messages returned by marketplace APIs, HTTP reason phrases and workflow error
//! strings may echo buyer data or secrets. Every such text passes [`scrub`] before it enters
//! an alert. A leak is a product failure, so the rules lean towards over-scrubbing, but they
//! try to keep what makes an alert useful: error class words (`INVALID_PARAMETER`), HTTP
//! statuses, SKUs (`SKU-0001`), ids shorter than 7 digits, dates and times.
//!
//! There is no regex engine: every rule is a hand-written scanner that makes one left-to-right
//! pass over the text (linear time; the look-arounds are bounded). The passes run in this
//! order, each on the output of the one before: URLs first (they hold everything else),
//! e-mail addresses and tokens before digits (so that digits inside them cannot split them),
//! digits before `key=value` (so that a spaced number is replaced whole). The placeholders
//! contain no digit and no `@` and are bracketed, so no later pass matches inside them.
//!
//! 1. Normalisation: control characters and Unicode spaces become a space; invisible format
//!    characters (zero-width spaces and joiners, bidi controls, soft hyphens, variation
//!    selectors, tags) are dropped so that they cannot split a value; full-width digits,
//!    letters and `＠＋－．＿（）` become ASCII; runs of spaces collapse.
//! 2. URLs (`scheme://…`): userinfo → `[redacted]@`; the whole query string and fragment →
//!    `?[redacted]`; scheme, host and path are kept (later passes still look at the path).
//! 3. E-mail addresses, also `name @ host.com`, `name%40host.com`, `name (at) host.com`,
//!    `name[at]host[dot]com`, IDN `用户@例子.中国`, `secret@10.0.0.1` → `[email]`.
//! 4. JWT-like `xxx.yyy.zzz` (base64url parts of ≥ 10 characters, starting with `eyJ` or
//!    mixed case with digits) → `[token]`; runs of ≥ 24 characters of `[A-Za-z0-9+/=_-]`
//!    that hold letters and digits → `[token]`, except identifiers made only of word-like
//!    pieces (`INVALID_PARAMETER_ERROR_2`, `SKU-0001-BLUE-XL2024`); in a path or
//!    `name=value` only the random-looking pieces go (`/bot/v2/hook/[token]`).
//! 5. Digits: runs of digits joined by up to 3 of ` .()` and dashes (`-`, `–`, `—`, `−`)
//!    form one number; dates (`2026-11-22`, `22.11.2026`) and times (`10:00:00.123`) that
//!    are not glued to other digits are kept apart. A number of ≥ 7 digits is replaced:
//!    `+CC …` (≤ 15 digits) and Chinese mobiles (`1[3-9]` + 9 digits, optionally after
//!    `86`/`0086`) → `[phone]`; 13–19 digits grouped by spaces or dashes only that pass the
//!    Luhn check → `[card]`; other runs of 13+ digits → `[number]`; 7–12 digits → `[phone]`.
//! 6. `key=value`, `key: value`, `"key":"value"` (also `\"key\":\"value\"`, `密码：value`)
//!    whose key contains token, secret, pass (password, passwd, passphrase), pwd, sign
//!    (signature), key, auth, session, cookie or credential → the value becomes
//!    `[redacted]`. `Authorization: Bearer x` loses the scheme and the credential,
//!    `Cookie: a=1; b=2` all its pairs, `"tokens": ["a", "b"]` the whole array; a value that
//!    is itself a key (`token: Authorization: Bearer x`) takes the inner value too. A key
//!    that only contains `code` is redacted only when its value is at least 8 characters
//!    and not a plain word code: `error_code=40001` and `sub_code=isv.invalid-parameter`
//!    are kept, `auth_code=…` (auth) and `code=4/0AX4XfWh…` are not. Values `null`, `true`,
//!    `missing`, `invalid`, … are kept.
//! 7. `Bearer xxx` / `Basic xxx` → `Bearer [redacted]` / `Basic [redacted]` (for `Basic` only
//!    when the next word looks encoded: a digit, `+/=` or an inner capital; words such as
//!    `token`, `auth` after either are kept).
//! 8. Addresses → `[address]`: a house number (≤ 6 digits, `221B`, `12-14`) followed by up
//!    to four words and a street suffix (Street, St, Avenue, Ave, Road, Rd, Boulevard, Blvd,
//!    Lane, Ln, Drive, Dr, Court, Ct, Way, Place, Pl, Terrace, Highway, Hwy, Parkway, Pkwy,
//!    Square, Sq, Strasse/Straße, Rue, Calle, Via, any case); the ambiguous ones (Way,
//!    Place, Court, Drive, Lane, Square, Via and their abbreviations) count only when
//!    capitalised after capitalised words, so "sent 3 times via proxy" survives; a unit
//!    that follows (`Apt 4B`, `Suite 200`, `#12`) and the name after `rue`/`Calle`/`Via`
//!    are included; street-first forms `Calle Mayor 12`, `Via Roma 5`, `Hauptstraße 5`,
//!    `Hauptstr. 5`, `Berliner Straße 12`; PO boxes. Chinese addresses: in a run of CJK
//!    text and ASCII letters and digits, from up to three characters before the first
//!    region or street character (省市区县镇乡村路街巷道) to the last number that carries a
//!    unit character (号栋幢室楼座单弄层户) or is dashed (`3-2-501`), or directly follows one.
//! 9. Names in context: after a cue word (buyer, customer, recipient, consignee, name,
//!    ship to, attn, contact, 收件人, 买家, 姓名, 联系人) up to four capitalised words or
//!    initials, or two to four CJK characters → `[name]`.
//! 10. Whitespace is collapsed and trimmed, then the text is cut to `max_chars` characters;
//!     a cut ends with `…`, which counts toward the maximum.
//!
//! Trade-offs. Over-scrubbed: order ids, timestamps and other numbers of 7+ digits (Unix
//! times, IPv4 addresses with 7+ digits, amounts such as `12345.678`, `SKU-0001-0002-0003`,
//! lists of small numbers separated by spaces, `Error 500 - 1001`), labelled `[phone]` or
//! `[number]` even when they are secrets (`sign=12345678` → `sign=[phone]`); hex digests,
//! UUIDs and long identifiers with digits and random-looking pieces; values of keys that
//! merely contain a key word (`keyword=…`, `design=…`, `max_tokens=…`, `token_type`); the
//! word after `key:` in prose; a few words of prose between a number and a street word
//! ("3 Orders On Main Street"); a capitalised word after a cue word ("name: Invalid").
//! Under-scrubbed: names without a cue word (not detectable); secrets shorter than
//! 24 characters outside a `key=value`, URL or `Bearer` context, and all-letter tokens;
//! `john . doe @ gmail . com` and `name at domain dot com`; Chinese numerals in addresses;
//! house numbers more than four words before the street suffix; an unquoted secret value is
//! cut at `,` `;` `&` `)` and spaces, so a password containing those can partly survive; a
//! URL query stops at a space, a quote or a non-ASCII character (the rest is still checked
//! by the later passes); an object value (`"token": {…}`) is left to its own keys.

/// Replace personal data and secrets in third-party free text and truncate the result to
/// at most `max_chars` characters (an ellipsis "…" marks a cut).
pub fn scrub(text: &str, max_chars: usize) -> String {
    let mut chars = normalize(text);
    for pass in PASSES {
        chars = pass(&chars);
    }
    finish(&chars, max_chars)
}

const EMAIL: &str = "[email]";
const PHONE: &str = "[phone]";
const CARD: &str = "[card]";
const NUMBER: &str = "[number]";
const ADDRESS: &str = "[address]";
const TOKEN: &str = "[token]";
const REDACTED: &str = "[redacted]";
const PLACEHOLDERS: [&str; 8] = [EMAIL, PHONE, CARD, NUMBER, ADDRESS, TOKEN, REDACTED, NAME];

type Pass = fn(&[char]) -> Vec<char>;

/// The passes after normalisation, in order (see the module documentation).
const PASSES: [Pass; 10] = [
    urls,
    emails,
    jwts,
    long_tokens,
    digit_runs,
    key_values,
    auth_schemes,
    addresses,
    cn_addresses,
    names,
];

const NAME: &str = "[name]";

/// Words after which a marketplace's error text names a person.
const NAME_CUES: [&str; 14] = [
    "buyer",
    "customer",
    "recipient",
    "consignee",
    "addressee",
    "ship to",
    "shipto",
    "attn",
    "contact",
    "name",
    "收件人",
    "买家",
    "姓名",
    "联系人",
];

/// Names in context: after a cue word (`buyer`, `customer`, `recipient`, `name`, `ship to`,
/// `收件人`, `买家`, `姓名` …) and optional `:`, `=` or quotes, up to four capitalised
/// words or initials (`Jane Q. Buyer`), or two to four CJK characters → `[name]`. A name
/// without a cue cannot be told from other words and is not caught.
fn names(s: &[char]) -> Vec<char> {
    let mut ed = Edit::new(s);
    let mut i = 0;
    while i < s.len() {
        let cue = NAME_CUES.iter().find(|c| {
            let n = c.chars().count();
            at_ci(s, i, c)
                && (c.chars().all(is_cjk) || (boundary_before(s, i) && boundary_after(s, i + n)))
        });
        let Some(cue) = cue else {
            i += 1;
            continue;
        };
        let mut k = i + cue.chars().count();
        // Separators between the cue and the name ("name": "…", buyer=…, 收件人：…).
        let mut gap = 0;
        while k < s.len() && gap < 4 && matches!(s[k], ' ' | ':' | '=' | '"' | '\'' | '：' | '\\')
        {
            k += 1;
            gap += 1;
        }
        let start = k;
        if k < s.len() && is_cjk(s[k]) {
            let end = run_end(s, k, is_cjk);
            if (2..=4).contains(&(end - k)) {
                ed.replace(start, end, NAME);
                i = end;
                continue;
            }
            i = k.max(i + 1);
            continue;
        }
        // Latin: capitalised words or initials, separated by single spaces.
        let mut end = start;
        let mut words = 0;
        let mut j = start;
        while words < 4 && j < s.len() && s[j].is_uppercase() {
            let w_end = run_end(s, j, |c| {
                c.is_alphabetic() || c == '\'' || c == '-' || c == '.'
            });
            let word = &s[j..w_end];
            if word.len() > 1 && word.iter().skip(1).all(|c| c.is_uppercase()) && word.len() > 3 {
                break; // an all-caps code word (INVALID), not a name
            }
            words += 1;
            end = w_end;
            if w_end < s.len()
                && s[w_end] == ' '
                && w_end + 1 < s.len()
                && s[w_end + 1].is_uppercase()
            {
                j = w_end + 1;
            } else {
                break;
            }
        }
        if words > 0 {
            ed.replace(start, end, NAME);
            i = end;
        } else {
            i = k.max(i + 1);
        }
    }
    ed.finish()
}

// ------------------------------------------------------------------------------------------
// Plumbing

/// Builds a pass's output: copies the source and splices placeholders over spans, which must
/// come in order (an overlapping span is clipped to what is not yet written).
struct Edit<'a> {
    src: &'a [char],
    out: Vec<char>,
    pos: usize,
}

impl<'a> Edit<'a> {
    fn new(src: &'a [char]) -> Self {
        Self {
            src,
            out: Vec::with_capacity(src.len() + 16),
            pos: 0,
        }
    }

    fn replace(&mut self, start: usize, end: usize, with: &str) {
        let end = end.min(self.src.len()).max(self.pos);
        let start = start.max(self.pos).min(end);
        self.out.extend_from_slice(&self.src[self.pos..start]);
        self.out.extend(with.chars());
        self.pos = end;
    }

    fn finish(mut self) -> Vec<char> {
        self.out.extend_from_slice(&self.src[self.pos..]);
        self.out
    }
}

/// Whether `s[i..]` starts with `lower` (ASCII case-insensitively).
fn at_ci(s: &[char], i: usize, lower: &str) -> bool {
    let mut k = i;
    for w in lower.chars() {
        match s.get(k) {
            Some(c) if c.to_ascii_lowercase() == w => k += 1,
            _ => return false,
        }
    }
    true
}

fn lower(s: &[char]) -> String {
    s.iter().map(char::to_ascii_lowercase).collect()
}

fn run_end(s: &[char], mut i: usize, f: impl Fn(char) -> bool) -> usize {
    while i < s.len() && f(s[i]) {
        i += 1;
    }
    i
}

/// A letter or digit of a space-separated script (Chinese text has no spaces between words,
/// so a CJK character next to a Latin word is a word boundary).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !is_cjk(c)
}

fn boundary_before(s: &[char], i: usize) -> bool {
    i == 0 || !is_word_char(s[i - 1])
}

fn boundary_after(s: &[char], i: usize) -> bool {
    s.get(i).is_none_or(|&c| !is_word_char(c))
}

fn is_placeholder(v: &[char]) -> bool {
    PLACEHOLDERS.iter().any(|p| v.iter().copied().eq(p.chars()))
}

fn starts_upper(w: &[char]) -> bool {
    w.first().is_some_and(|c| c.is_uppercase())
}

/// `Roma`, `M`: a capital followed by lower-case letters (not an acronym such as `API`).
fn title_case(w: &[char]) -> bool {
    starts_upper(w) && (w.len() == 1 || w[1..].iter().any(|c| c.is_lowercase()))
}

fn trim_dots(w: &[char]) -> &[char] {
    let mut e = w.len();
    while e > 0 && w[e - 1] == '.' {
        e -= 1;
    }
    &w[..e]
}

/// Letters in one consistent style: `lower`, `UPPER`, `Capital`, or `camelCase` (no two
/// capitals in a row, at most a third of the letters capital). Random base64 rarely is.
fn case_consistent(l: &[char]) -> bool {
    let upper = l.iter().filter(|c| c.is_ascii_uppercase()).count();
    upper == 0
        || upper == l.len()
        || (upper == 1 && l[0].is_ascii_uppercase())
        || (upper * 3 <= l.len()
            && !l
                .windows(2)
                .any(|w| w[0].is_ascii_uppercase() && w[1].is_ascii_uppercase()))
}

// ------------------------------------------------------------------------------------------
// Normalisation and the final cut

fn normalize(text: &str) -> Vec<char> {
    let mut out: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        if is_invisible(c) {
            continue;
        }
        let c = fold_fullwidth(c);
        if c.is_whitespace() || c.is_control() {
            if out.last().is_some_and(|&l| l != ' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    if out.last() == Some(&' ') {
        out.pop();
    }
    out
}

/// Characters that render as nothing and could hide a value from the scanners.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{34F}'
            | '\u{61C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

fn fold_fullwidth(c: char) -> char {
    match c {
        '０'..='９'
        | 'Ａ'..='Ｚ'
        | 'ａ'..='ｚ'
        | '＠'
        | '＋'
        | '－'
        | '．'
        | '＿'
        | '（'
        | '）' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

fn finish(s: &[char], max_chars: usize) -> String {
    let mut v: Vec<char> = Vec::with_capacity(s.len());
    for &c in s {
        if c == ' ' && v.last().is_none_or(|&l| l == ' ') {
            continue;
        }
        v.push(c);
    }
    while v.last() == Some(&' ') {
        v.pop();
    }
    if v.len() <= max_chars {
        return v.into_iter().collect();
    }
    if max_chars == 0 {
        return String::new();
    }
    v.truncate(max_chars - 1);
    while v.last() == Some(&' ') {
        v.pop();
    }
    v.push('…');
    v.into_iter().collect()
}

// ------------------------------------------------------------------------------------------
// URLs

fn urls(s: &[char]) -> Vec<char> {
    let n = s.len();
    let mut ed = Edit::new(s);
    let mut floor = 0;
    let mut i = 0;
    while i + 2 < n {
        if s[i] != ':' || s[i + 1] != '/' || s[i + 2] != '/' {
            i += 1;
            continue;
        }
        let mut b = i;
        while b > floor && i - b < 32 && is_scheme_char(s[b - 1]) {
            b -= 1;
        }
        while b < i && !s[b].is_ascii_alphabetic() {
            b += 1;
        }
        if b == i {
            i += 3;
            continue;
        }
        let host = i + 3;
        let authority_end = run_end(s, host, |c| !url_stop(c) && !matches!(c, '/' | '?' | '#'));
        if let Some(at) = (host..authority_end).rev().find(|&k| s[k] == '@')
            && at > host
        {
            ed.replace(host, at, REDACTED);
        }
        let mut j = run_end(s, authority_end, |c| {
            !url_stop(c) && !matches!(c, '?' | '#')
        });
        if j < n && matches!(s[j], '?' | '#') {
            let mut k = j + 1;
            while k < n && !query_stop(s, k) {
                k += 1;
            }
            if k > j + 1 {
                ed.replace(j, k, "?[redacted]");
            }
            j = k;
        }
        floor = j;
        i = j.max(i + 3);
    }
    ed.finish()
}

fn is_scheme_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')
}

/// Where a URL's host or path ends.
fn url_stop(c: char) -> bool {
    !c.is_ascii()
        || c == ' '
        || c.is_ascii_control()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | '`' | '\\' | '{' | '}' | '|' | '^'
        )
}

/// Where a query string or fragment ends: a space, a quote, an angle bracket or a non-ASCII
/// character (Chinese text often follows a URL without a space).
fn query_stop(s: &[char], k: usize) -> bool {
    let c = s[k];
    !c.is_ascii()
        || c == ' '
        || c.is_ascii_control()
        || matches!(c, '"' | '\'' | '<' | '>' | '`')
        || (c == '\\' && matches!(s.get(k + 1), Some('"' | '\'')))
}

// ------------------------------------------------------------------------------------------
// E-mail addresses

fn emails(s: &[char]) -> Vec<char> {
    let n = s.len();
    let mut ed = Edit::new(s);
    let mut i = 0;
    while i < n {
        if let Some(domain) = at_sign(s, i) {
            let local = local_part_start(s, i, ed.pos);
            if local < i
                && let Some(end) = domain_end(s, domain)
            {
                ed.replace(local, end, EMAIL);
                i = end;
                continue;
            }
        }
        i += 1;
    }
    ed.finish()
}

/// `@`, ` @ `, `%40`, `(at)`, `[at]`, `{at}`, `<at>` (optionally between spaces) at `i`:
/// where the domain starts.
fn at_sign(s: &[char], i: usize) -> Option<usize> {
    if s[i] == '@' {
        return Some(i + 1);
    }
    if s[i] == ' ' && s.get(i + 1) == Some(&'@') && s.get(i + 2) == Some(&' ') {
        return Some(i + 3);
    }
    if at_ci(s, i, "%40") {
        return Some(i + 3);
    }
    let j = if s[i] == ' ' { i + 1 } else { i };
    for tok in ["(at)", "[at]", "{at}", "<at>"] {
        if at_ci(s, j, tok) {
            let k = j + 4;
            return Some(if s.get(k) == Some(&' ') { k + 1 } else { k });
        }
    }
    None
}

fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

/// Start of the local part that ends at `end` (`end` when there is none).
fn local_part_start(s: &[char], end: usize, floor: usize) -> usize {
    let mut k = end;
    while k > floor && is_local_char(s[k - 1]) {
        k -= 1;
    }
    if k == end {
        while k > floor && !s[k - 1].is_ascii() && s[k - 1].is_alphanumeric() {
            k -= 1;
        }
    }
    while k < end && s[k] == '.' {
        k += 1;
    }
    if s[k..end].iter().any(|c| c.is_alphanumeric()) {
        k
    } else {
        end
    }
}

/// End of a domain (≥ 2 labels, a top-level label with a letter, or an IPv4 address)
/// starting at `start`.
fn domain_end(s: &[char], start: usize) -> Option<usize> {
    let mut j = start;
    let mut labels = 0;
    let mut numeric = 0;
    let mut best = None;
    loop {
        let ls = j;
        let Some(&first) = s.get(j) else { break };
        if !first.is_alphanumeric() {
            break;
        }
        let ascii = first.is_ascii();
        j = run_end(s, j, |c| {
            c == '-'
                || if ascii {
                    c.is_ascii_alphanumeric()
                } else {
                    !c.is_ascii() && c.is_alphanumeric()
                }
        });
        while s[j - 1] == '-' {
            j -= 1;
        }
        let label = &s[ls..j];
        labels += 1;
        if label.len() <= 3 && label.iter().all(char::is_ascii_digit) {
            numeric += 1;
        }
        let tld = !ascii || (label.len() >= 2 && label.iter().any(char::is_ascii_alphabetic));
        if labels >= 2 && (tld || (labels == 4 && numeric == 4)) {
            best = Some(j);
        }
        match dot_token(s, j) {
            Some(k) => j = k,
            None => break,
        }
    }
    best
}

/// `.`, `(dot)`, `[dot]`, `{dot}`, `<dot>` at `j`: where the next label starts.
fn dot_token(s: &[char], j: usize) -> Option<usize> {
    if s.get(j) == Some(&'.') {
        return Some(j + 1);
    }
    let k = if s.get(j) == Some(&' ') { j + 1 } else { j };
    for tok in ["(dot)", "[dot]", "{dot}", "<dot>"] {
        if at_ci(s, k, tok) {
            let m = k + 5;
            return Some(if s.get(m) == Some(&' ') { m + 1 } else { m });
        }
    }
    None
}

// ------------------------------------------------------------------------------------------
// Tokens

fn is_b64url(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn jwts(s: &[char]) -> Vec<char> {
    let n = s.len();
    let mut ed = Edit::new(s);
    let mut parts: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < n {
        if !is_b64url(s[i]) {
            i += 1;
            continue;
        }
        parts.clear();
        let mut a = i;
        loop {
            let e = run_end(s, a, is_b64url);
            parts.push((a, e));
            if e + 1 < n && s[e] == '.' && is_b64url(s[e + 1]) {
                a = e + 1;
            } else {
                i = e;
                break;
            }
        }
        let mut w = 0;
        while w < parts.len() {
            let mut x = w;
            while x < parts.len() && parts[x].1 - parts[x].0 >= 10 {
                x += 1;
            }
            if x - w >= 3 && jwt_like(s, &parts[w..x]) {
                ed.replace(parts[w].0, parts[x - 1].1, TOKEN);
            }
            w = x + 1;
        }
    }
    ed.finish()
}

/// A JWT's header starts with `eyJ` (`{"`); otherwise ask for random-looking parts, so
/// that long lower-case host names are not taken for tokens.
fn jwt_like(s: &[char], parts: &[(usize, usize)]) -> bool {
    if s[parts[0].0..].starts_with(&['e', 'y', 'J']) {
        return true;
    }
    let upper = parts
        .iter()
        .filter(|&&(a, e)| s[a..e].iter().any(char::is_ascii_uppercase))
        .count();
    let digit = parts
        .iter()
        .any(|&(a, e)| s[a..e].iter().any(char::is_ascii_digit));
    upper >= 2 && digit
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-')
}

fn long_tokens(s: &[char]) -> Vec<char> {
    let n = s.len();
    let mut ed = Edit::new(s);
    let mut i = 0;
    while i < n {
        if !is_token_char(s[i]) {
            i += 1;
            continue;
        }
        let start = i;
        i = run_end(s, i, is_token_char);
        let run = &s[start..i];
        if run.len() >= 24
            && run.iter().any(char::is_ascii_alphabetic)
            && run.iter().any(char::is_ascii_digit)
        {
            redact_token_run(&mut ed, s, start, i);
        }
    }
    ed.finish()
}

/// A long run with letters and digits. Kept when it is made of several word-like pieces
/// (`INVALID_PARAMETER_ERROR_2`, `SKU-0001-BLUE-XL2024`); a path or `name=value` keeps its
/// word-like parts (`/open-apis/bot/v2/hook/[token]`); anything else is one token.
fn redact_token_run(ed: &mut Edit<'_>, s: &[char], start: usize, end: usize) {
    let run = &s[start..end];
    let mut pieces = 0;
    let mut wordy = true;
    for seg in run
        .split(|&c| matches!(c, '+' | '/' | '=' | '_' | '-'))
        .filter(|seg| !seg.is_empty())
    {
        pieces += 1;
        wordy &= is_wordy(seg);
    }
    if pieces >= 2 && wordy {
        return;
    }
    let mut parts = Vec::new();
    let mut a = start;
    let mut k = start;
    while k < end {
        if s[k] == '/' || (s[k] == '=' && k + 1 < end && s[k + 1] != '=') {
            parts.push((a, k));
            a = k + 1;
        }
        k += 1;
    }
    parts.push((a, end));
    let part_wordy = |p: &[char]| p.split(|&c| matches!(c, '+' | '_' | '-')).all(is_wordy);
    let path_like = parts.len() > 1
        && parts
            .iter()
            .any(|&(a, e)| s[a..e].iter().any(char::is_ascii_alphabetic) && part_wordy(&s[a..e]));
    if path_like {
        for &(a, e) in &parts {
            if a < e && !part_wordy(&s[a..e]) {
                ed.replace(a, e, TOKEN);
            }
        }
    } else {
        ed.replace(start, end, TOKEN);
    }
}

/// A word-like piece of an identifier: digits only (the digit rules see them later), or
/// letters in one style with at most 4 trailing digits (`v2`, `XL2024`) or at most 3 leading
/// digits (`2fa`).
fn is_wordy(seg: &[char]) -> bool {
    if seg.iter().all(char::is_ascii_digit) {
        return true;
    }
    let lead = seg.iter().take_while(|c| c.is_ascii_digit()).count();
    let letters = seg[lead..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic())
        .count();
    let tail = &seg[lead + letters..];
    letters > 0
        && lead <= 3
        && tail.len() <= 4
        && (lead == 0 || tail.is_empty())
        && tail.iter().all(char::is_ascii_digit)
        && case_consistent(&seg[lead..lead + letters])
}

// ------------------------------------------------------------------------------------------
// Digits: phones, cards, long numbers

type Run = (usize, usize);

fn run_len(r: Run) -> usize {
    r.1 - r.0
}

fn run_value(s: &[char], r: Run) -> u32 {
    s[r.0..r.1].iter().fold(0u32, |v, c| {
        v.saturating_mul(10)
            .saturating_add(c.to_digit(10).unwrap_or(0))
    })
}

fn digit_runs(s: &[char]) -> Vec<char> {
    let n = s.len();
    let mut runs: Vec<Run> = Vec::new();
    let mut i = 0;
    while i < n {
        if s[i].is_ascii_digit() {
            let e = run_end(s, i, |c| c.is_ascii_digit());
            runs.push((i, e));
            i = e;
        } else {
            i += 1;
        }
    }
    let mut barrier = vec![false; runs.len()];
    mark_dates(s, &runs, &mut barrier);
    mark_times(s, &runs, &mut barrier);
    let mut ed = Edit::new(s);
    let mut r = 0;
    while r < runs.len() {
        if barrier[r] {
            r += 1;
            continue;
        }
        let first = r;
        while r + 1 < runs.len() && !barrier[r + 1] && joins(s, runs[r].1, runs[r + 1].0) {
            r += 1;
        }
        redact_number(&mut ed, s, &runs[first..=r]);
        r += 1;
    }
    ed.finish()
}

/// Whether the gap `s[a..b]` between two digit runs joins them into one number.
fn joins(s: &[char], a: usize, b: usize) -> bool {
    (1..=3).contains(&(b - a))
        && s[a..b]
            .iter()
            .all(|&c| matches!(c, ' ' | '.' | '(' | ')') || is_dash(c))
}

/// `-` and its Unicode look-alikes (hyphens, en and em dashes, minus signs).
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}'
    )
}

/// `2026-11-22`, `2026.11.22`, `22.11.2026`, `11/22/2026`, not glued to other digits.
fn mark_dates(s: &[char], runs: &[Run], barrier: &mut [bool]) {
    for (r, w) in runs.windows(3).enumerate() {
        let (a, b, c) = (w[0], w[1], w[2]);
        if b.0 != a.1 + 1 || c.0 != b.1 + 1 {
            continue;
        }
        let sep = s[a.1];
        if !matches!(sep, '-' | '.' | '/') || s[b.1] != sep {
            continue;
        }
        let year = |x: Run| run_len(x) == 4 && (1900..=2099).contains(&run_value(s, x));
        let small = |x: Run, max: u32| {
            (1..=2).contains(&run_len(x)) && (1..=max).contains(&run_value(s, x))
        };
        let ymd = year(a) && small(b, 12) && small(c, 31);
        let dmy = year(c) && ((small(a, 31) && small(b, 12)) || (small(a, 12) && small(b, 31)));
        // Not the tail of a longer number (`+1 1-1-1900`, `415 12-12-2012`).
        let glued_before = (r > 0 && !barrier[r - 1] && joins(s, runs[r - 1].1, a.0))
            || (a.0 > 0 && s[a.0 - 1] == '+');
        let glued_after =
            s.get(c.1) == Some(&sep) && s.get(c.1 + 1).is_some_and(char::is_ascii_digit);
        if (ymd || dmy) && !glued_before && !glued_after {
            barrier[r..r + 3].fill(true);
        }
    }
}

/// `10:00`, `10:00:00`, `10:00:00.123456` (not when glued to a number before it).
fn mark_times(s: &[char], runs: &[Run], barrier: &mut [bool]) {
    let mut r = 0;
    while r + 1 < runs.len() {
        let (a, b) = (runs[r], runs[r + 1]);
        let joined_before = r > 0 && !barrier[r - 1] && joins(s, runs[r - 1].1, a.0);
        if joined_before
            || run_len(a) > 2
            || run_len(b) != 2
            || b.0 != a.1 + 1
            || s[a.1] != ':'
            || run_value(s, a) > 24
            || run_value(s, b) > 59
        {
            r += 1;
            continue;
        }
        barrier[r] = true;
        barrier[r + 1] = true;
        let mut q = r + 1;
        let next_is = |q: usize, seps: &[char], max_len: usize| {
            q + 1 < runs.len()
                && runs[q + 1].0 == runs[q].1 + 1
                && seps.contains(&s[runs[q].1])
                && run_len(runs[q + 1]) <= max_len
        };
        if next_is(q, &[':'], 2) && run_len(runs[q + 1]) == 2 {
            q += 1;
            barrier[q] = true;
        }
        if next_is(q, &['.', ','], 9) {
            q += 1;
            barrier[q] = true;
        }
        r = q + 1;
    }
}

fn redact_number(ed: &mut Edit<'_>, s: &[char], seq: &[Run]) {
    let digits: Vec<u32> = seq
        .iter()
        .flat_map(|&(a, e)| s[a..e].iter().map(|c| c.to_digit(10).unwrap_or(0)))
        .collect();
    let n = digits.len();
    if n < 7 {
        return;
    }
    let (first, last) = (seq[0], seq[seq.len() - 1]);
    let mut start = first.0;
    let plus = start > 0 && s[start - 1] == '+';
    if plus {
        start -= 1;
    }
    if seq.len() > 1 && start > 0 && s[start - 1] == '(' && s.get(first.1) == Some(&')') {
        start -= 1;
    }
    let spaced = seq
        .windows(2)
        .all(|w| s[w[0].1..w[1].0].iter().all(|&c| c == ' ' || is_dash(c)));
    let label = if (plus && n <= 15) || cn_mobile(&digits) {
        PHONE
    } else if !plus && (13..=19).contains(&n) && spaced && luhn(&digits) {
        CARD
    } else if n >= 13 {
        NUMBER
    } else {
        PHONE
    };
    ed.replace(start, last.1, label);
}

/// `1[3-9]` + 9 digits, optionally after `86` or `0086`.
fn cn_mobile(d: &[u32]) -> bool {
    let d = match d.len() {
        13 if d[..2] == [8, 6] => &d[2..],
        15 if d[..4] == [0, 0, 8, 6] => &d[4..],
        _ => d,
    };
    d.len() == 11 && d[0] == 1 && (3..=9).contains(&d[1])
}

fn luhn(d: &[u32]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| match (i % 2, x * 2) {
            (0, _) => x,
            (_, y) if y > 9 => y - 9,
            (_, y) => y,
        })
        .sum();
    sum.is_multiple_of(10)
}

// ------------------------------------------------------------------------------------------
// key=value secrets

const SECRET_KEY_WORDS: [&str; 10] = [
    "token",
    "secret",
    "pass",
    "pwd",
    "sign",
    "key",
    "auth",
    "session",
    "cookie",
    "credential",
];

const CJK_SECRET_KEYS: [&str; 10] = [
    "密码",
    "口令",
    "密钥",
    "秘钥",
    "令牌",
    "验证码",
    "校验码",
    "动态码",
    "授权码",
    "签名",
];

/// Values that are words about the secret rather than the secret.
const KEEP_VALUES: [&str; 24] = [
    "null",
    "nil",
    "none",
    "true",
    "false",
    "undefined",
    "missing",
    "invalid",
    "required",
    "empty",
    "expired",
    "incorrect",
    "wrong",
    "error",
    "failed",
    "mismatch",
    "not",
    "no",
    "is",
    "must",
    "should",
    "the",
    "a",
    "an",
];

const AUTH_SCHEMES: [&str; 18] = [
    "bearer",
    "basic",
    "digest",
    "token",
    "bot",
    "hmac",
    "hmac-sha256",
    "oauth",
    "negotiate",
    "ntlm",
    "apikey",
    "sharedkey",
    "jwt",
    "key",
    "aws4-hmac-sha256",
    "sso-key",
    "mac",
    "signature",
];

#[derive(Clone, Copy, Default)]
struct SecretKey {
    /// The key only matched `code`: keep short or plain-word values.
    code_only: bool,
    /// `Authorization: Scheme credentials`: the scheme and the credentials go.
    authorization: bool,
    cookie: bool,
}

fn key_values(s: &[char]) -> Vec<char> {
    let n = s.len();
    let mut ed = Edit::new(s);
    let mut i = 0;
    while i < n {
        let next = s.get(i + 1).copied();
        let separator = match s[i] {
            '=' => !matches!(next, Some('=' | '>')),
            ':' => !matches!(next, Some(':' | '/')),
            '：' => true,
            _ => false,
        };
        if separator
            && let Some(key) = secret_key(s, i, ed.pos)
            && let Some((a, e)) = secret_value(s, i + 1, key)
        {
            ed.replace(a, e, REDACTED);
            i = e.max(i + 1);
            continue;
        }
        i += 1;
    }
    ed.finish()
}

fn ends_with_at(s: &[char], end: usize, floor: usize, w: &str) -> bool {
    let len = w.chars().count();
    end >= floor + len && s[end - len..end].iter().copied().eq(w.chars())
}

/// The key before the separator at `sep`, if it names a secret.
fn secret_key(s: &[char], sep: usize, floor: usize) -> Option<SecretKey> {
    let mut end = sep;
    if end > floor && s[end - 1] == ' ' {
        end -= 1;
    }
    if end > floor && matches!(s[end - 1], '"' | '\'') {
        end -= 1;
        if end > floor && s[end - 1] == '\\' {
            end -= 1;
        }
    }
    let mut start = end;
    while start > floor
        && end - start < 64
        && (s[start - 1].is_ascii_alphanumeric() || matches!(s[start - 1], '_' | '-'))
    {
        start -= 1;
    }
    if start < end {
        let key = lower(&s[start..end]);
        let secret = SECRET_KEY_WORDS.iter().any(|w| key.contains(w));
        if !secret && !key.contains("code") {
            return None;
        }
        return Some(SecretKey {
            code_only: !secret,
            authorization: key.contains("authorization"),
            cookie: key.contains("cookie"),
        });
    }
    CJK_SECRET_KEYS
        .iter()
        .any(|w| ends_with_at(s, end, floor, w))
        .then(SecretKey::default)
}

/// Where an unquoted value ends.
fn value_stop(s: &[char], k: usize) -> bool {
    let c = s[k];
    c == ' '
        || matches!(
            c,
            '&' | ','
                | ';'
                | '"'
                | '\''
                | '<'
                | '>'
                | '}'
                | ']'
                | ')'
                | '|'
                | '，'
                | '。'
                | '；'
                | '、'
                | '）'
        )
        || (c == '\\' && matches!(s.get(k + 1), Some('"' | '\'')))
}

fn value_end(s: &[char], mut k: usize) -> usize {
    while k < s.len() && !value_stop(s, k) {
        k += 1;
    }
    k
}

/// The value after a separator ending just before `from`, if it is to be redacted. A value
/// that is itself the key of another pair (`token: Authorization: Bearer x`,
/// `code: (client_secret: x)`) takes that pair's value too, read with that key's rules;
/// otherwise the separator it swallowed would leave the inner value unprotected.
fn secret_value(s: &[char], from: usize, key: SecretKey) -> Option<(usize, usize)> {
    let (a, mut e, mut after) = one_value(s, from, key)?;
    if keep_value(&s[a..e], key) {
        return None;
    }
    let mut outer = key;
    loop {
        let sep = if after > e {
            let k = if s.get(after) == Some(&' ') {
                after + 1
            } else {
                after
            };
            match s.get(k) {
                Some(':' | '=' | '：') => k,
                _ => break,
            }
        } else if e > a && matches!(s[e - 1], ':' | '=' | '：') {
            e - 1
        } else {
            break;
        };
        let mut nested = secret_key(s, sep, a).unwrap_or(outer);
        nested.code_only = false;
        match one_value(s, sep + 1, nested) {
            Some((_, e2, after2)) if e2 > e => {
                e = e2;
                after = after2;
                outer = nested;
            }
            _ => break,
        }
    }
    Some((a, e))
}

/// One value after a separator ending just before `from`: its span and where it ends
/// including a closing quote.
fn one_value(s: &[char], from: usize, key: SecretKey) -> Option<(usize, usize, usize)> {
    let n = s.len();
    let mut v = from;
    if s.get(v) == Some(&' ') {
        v += 1;
    }
    let first = *s.get(v)?;
    let escaped = first == '\\' && matches!(s.get(v + 1), Some('"' | '\''));
    if escaped || matches!(first, '"' | '\'') {
        let (q, a) = if escaped {
            (s[v + 1], v + 2)
        } else {
            (first, v + 1)
        };
        let mut e = a;
        while e < n {
            if s[e] == '\\' {
                if escaped && s.get(e + 1) == Some(&q) {
                    break;
                }
                e += 2;
            } else if s[e] == q && !escaped {
                break;
            } else {
                e += 1;
            }
        }
        let e = e.min(n);
        let after = if e == n {
            n
        } else if escaped {
            e + 2
        } else {
            e + 1
        };
        return (e > a).then_some((a, e, after));
    }
    match first {
        // An object: its own keys are looked at one by one.
        '{' => None,
        '[' => {
            let e = (v..n).find(|&k| s[k] == ']').map_or(n, |k| k + 1);
            (!is_placeholder(&s[v..e])).then_some((v, e, e))
        }
        _ => {
            let mut e = value_end(s, v);
            if e == v {
                return None;
            }
            // `Bearer x`, `(Basic x`, `Bearer Bearer x`: the credential after a scheme goes too.
            let mut word_start = v;
            let mut first_word = true;
            while s.get(e) == Some(&' ') && e + 1 < n && !value_stop(s, e + 1) {
                let word = &s[word_start..e];
                let letters = word
                    .iter()
                    .rev()
                    .take_while(|c| c.is_ascii_alphabetic() || **c == '-')
                    .count();
                let tail = &word[word.len() - letters..];
                let whole = word[..word.len() - letters]
                    .iter()
                    .all(|c| !c.is_alphanumeric());
                let scheme = !tail.is_empty()
                    && ((first_word && key.authorization && whole)
                        || (AUTH_SCHEMES.contains(&lower(tail).as_str())
                            && word
                                .len()
                                .checked_sub(letters + 1)
                                .is_none_or(|k| !word[k].is_ascii_alphanumeric())));
                if !scheme {
                    break;
                }
                word_start = e + 1;
                e = value_end(s, e + 1);
                first_word = false;
            }
            if key.cookie {
                while s.get(e) == Some(&';') {
                    let mut f = e + 1;
                    if s.get(f) == Some(&' ') {
                        f += 1;
                    }
                    let g = value_end(s, f);
                    if !s[f..g].contains(&'=') {
                        break;
                    }
                    e = g;
                }
            }
            Some((v, e, e))
        }
    }
}

fn keep_value(v: &[char], key: SecretKey) -> bool {
    if is_placeholder(v) || KEEP_VALUES.contains(&lower(v).as_str()) {
        return true;
    }
    key.code_only
        && (v.len() < 8
            || v.split(|&c| matches!(c, '_' | '-' | '.' | ':'))
                .all(|p| p.iter().all(char::is_ascii_alphabetic) && case_consistent(p)))
}

// ------------------------------------------------------------------------------------------
// Bearer / Basic

const NOT_CREDENTIALS: [&str; 42] = [
    "bearer",
    "basic",
    "token",
    "tokens",
    "auth",
    "authentication",
    "authorization",
    "header",
    "scheme",
    "realm",
    "error",
    "is",
    "was",
    "missing",
    "invalid",
    "required",
    "expired",
    "the",
    "a",
    "an",
    "not",
    "and",
    "or",
    "format",
    "credentials",
    "credential",
    "type",
    "value",
    "string",
    "access",
    "plan",
    "info",
    "information",
    "mode",
    "for",
    "with",
    "in",
    "on",
    "of",
    "to",
    "failed",
    "required.",
];

fn is_credential_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/' | '=')
}

fn auth_schemes(s: &[char]) -> Vec<char> {
    let n = s.len();
    let mut ed = Edit::new(s);
    let mut i = 0;
    while i < n {
        if boundary_before(s, i) {
            let basic = at_ci(s, i, "basic");
            let len = if at_ci(s, i, "bearer") {
                6
            } else if basic {
                5
            } else {
                0
            };
            if len > 0 && s.get(i + len) == Some(&' ') {
                let a = i + len + 1;
                let e = run_end(s, a, is_credential_char);
                let cred = &s[a..e];
                let mut word = cred;
                while let [rest @ .., '=' | '.'] = word {
                    word = rest;
                }
                if !word.is_empty()
                    && !NOT_CREDENTIALS.contains(&lower(word).as_str())
                    && (!basic || looks_encoded(cred))
                {
                    ed.replace(a, e, REDACTED);
                    i = e;
                    continue;
                }
            }
        }
        i += 1;
    }
    ed.finish()
}

/// Base64 credentials after `Basic` almost always hold a digit, `+/=` or an inner capital;
/// English words ("Basic plan") do not.
fn looks_encoded(cred: &[char]) -> bool {
    cred.len() >= 4
        && (cred
            .iter()
            .any(|c| c.is_ascii_digit() || matches!(c, '+' | '/' | '='))
            || cred[1..].iter().any(char::is_ascii_uppercase))
}

// ------------------------------------------------------------------------------------------
// Street addresses

fn addresses(s: &[char]) -> Vec<char> {
    let n = s.len();
    let mut ed = Edit::new(s);
    let mut i = 0;
    while i < n {
        if is_word_char(s[i]) && boundary_before(s, i) {
            let found = if s[i].is_ascii_digit() {
                house_number_first(s, i)
            } else {
                street_first(s, i, ed.pos).or_else(|| po_box(s, i))
            };
            if let Some((a, e)) = found {
                ed.replace(a, e, ADDRESS);
                i = e;
                continue;
            }
        }
        i += 1;
    }
    ed.finish()
}

/// End of the word at `i` (non-CJK letters and digits, `.'’-`, not ending in `'’-`), if it
/// is a word of at most 40 characters.
fn word_end(s: &[char], i: usize) -> Option<usize> {
    let mut e = i;
    while e < s.len()
        && e - i <= 40
        && (is_word_char(s[e]) || matches!(s[e], '.' | '\'' | '’' | '-'))
    {
        e += 1;
    }
    if e - i > 40 {
        return None;
    }
    while e > i && matches!(s[e - 1], '\'' | '’' | '-') {
        e -= 1;
    }
    (e > i && is_word_char(s[i])).then_some(e)
}

struct Suffix {
    /// Counts in any case and after any words.
    strong: bool,
    /// The street's name follows the suffix (`rue de la Paix`).
    name_follows: bool,
}

fn street_suffix(word: &[char]) -> Option<Suffix> {
    let (strong, name_follows) = match lower(trim_dots(word)).as_str() {
        "street" | "st" | "road" | "rd" | "highway" | "hwy" | "parkway" | "pkwy" | "strasse"
        | "straße" | "terrace" | "blvd" | "ave" => (true, false),
        "avenue" | "boulevard" | "rue" | "calle" | "avenida" | "rua" => (true, true),
        "lane" | "ln" | "drive" | "dr" | "court" | "ct" | "way" | "square" | "sq" | "pl" => {
            (false, false)
        }
        "place" | "via" => (false, true),
        _ => return None,
    };
    Some(Suffix {
        strong,
        name_follows,
    })
}

fn is_particle(w: &[char]) -> bool {
    let l = lower(w);
    matches!(
        l.as_str(),
        "de" | "del"
            | "della"
            | "delle"
            | "dei"
            | "degli"
            | "di"
            | "da"
            | "do"
            | "dos"
            | "das"
            | "du"
            | "des"
            | "la"
            | "las"
            | "le"
            | "les"
            | "los"
            | "el"
            | "y"
            | "der"
            | "den"
            | "am"
            | "an"
            | "im"
            | "zum"
            | "zur"
    ) || ((l.starts_with("l'") || l.starts_with("d'")) && l.len() > 2)
}

/// `12 Main Street`, `221B Baker St., Apt 4`, `12 rue de la Paix`.
fn house_number_first(s: &[char], i: usize) -> Option<(usize, usize)> {
    let n = s.len();
    let mut j = i;
    while j < n && j - i < 7 && s[j].is_ascii_digit() {
        j += 1;
    }
    if j - i > 6 {
        return None;
    }
    if j < n && s[j].is_ascii_alphabetic() && boundary_after(s, j + 1) {
        j += 1;
    } else if j + 1 < n && s[j] == '-' && s[j + 1].is_ascii_digit() {
        let mut k = j + 1;
        while k < n && k - j <= 7 && s[k].is_ascii_digit() {
            k += 1;
        }
        if k - j <= 7 && boundary_after(s, k) {
            j = k;
        }
    }
    if !boundary_after(s, j) || s.get(j) != Some(&' ') {
        return None;
    }
    let mut k = j + 1;
    let mut between = 0;
    let mut capitalised = true;
    loop {
        let we = word_end(s, k)?;
        let word = &s[k..we];
        if let Some(suffix) = street_suffix(word) {
            let tail = if suffix.name_follows {
                name_tail(s, we)
            } else {
                we
            };
            let named = between > 0 || tail > we;
            if named && (suffix.strong || (capitalised && starts_upper(word))) {
                return Some((i, unit_designator(s, directional(s, tail))));
            }
        }
        if between == 4 || !word.iter().any(|c| c.is_alphabetic()) {
            return None;
        }
        capitalised &= starts_upper(word) || word[0].is_ascii_digit();
        between += 1;
        if s.get(we) != Some(&' ') {
            return None;
        }
        k = we + 1;
    }
}

/// The street name after a suffix such as `rue` or `Calle`: capitalised words and particles.
fn name_tail(s: &[char], from: usize) -> usize {
    let mut end = from;
    for _ in 0..4 {
        if s.get(end) != Some(&' ') {
            break;
        }
        let Some(we) = word_end(s, end + 1) else {
            break;
        };
        let w = &s[end + 1..we];
        if !(starts_upper(w) || is_particle(w)) {
            break;
        }
        end = we;
    }
    end
}

fn directional(s: &[char], from: usize) -> usize {
    if s.get(from) != Some(&' ') {
        return from;
    }
    let Some(we) = word_end(s, from + 1) else {
        return from;
    };
    let w = &s[from + 1..we];
    let dir = matches!(
        lower(trim_dots(w)).as_str(),
        "n" | "s" | "e" | "w" | "ne" | "nw" | "se" | "sw" | "north" | "south" | "east" | "west"
    );
    if dir && starts_upper(w) { we } else { from }
}

/// `, Apt 4B`, ` Suite 200`, ` #12` after an address.
fn unit_designator(s: &[char], from: usize) -> usize {
    let mut k = from;
    if s.get(k) == Some(&',') {
        k += 1;
    }
    if s.get(k) == Some(&' ') {
        k += 1;
    }
    if k == from {
        return from;
    }
    let keyword_end = if s.get(k) == Some(&'#') {
        k + 1
    } else {
        let Some(we) = word_end(s, k) else {
            return from;
        };
        let kw = lower(trim_dots(&s[k..we]));
        if !matches!(
            kw.as_str(),
            "apt"
                | "apartment"
                | "suite"
                | "ste"
                | "unit"
                | "fl"
                | "floor"
                | "rm"
                | "room"
                | "bldg"
                | "building"
                | "no"
        ) {
            return from;
        }
        we
    };
    let mut a = keyword_end;
    if s.get(a) == Some(&' ') {
        a += 1;
    }
    if s.get(a) == Some(&'#') {
        a += 1;
    }
    let mut e = a;
    while e < s.len() && e - a < 9 && (s[e].is_ascii_alphanumeric() || s[e] == '-') {
        e += 1;
    }
    let id = &s[a..e];
    let plausible = !id.is_empty()
        && id.len() <= 8
        && (id.iter().any(char::is_ascii_digit) || id.len() == 1)
        && boundary_after(s, e);
    if plausible { e } else { from }
}

/// `Calle Mayor 12`, `Via Roma 5`, `Hauptstraße 5`, `Berliner Straße 12a`.
fn street_first(s: &[char], i: usize, floor: usize) -> Option<(usize, usize)> {
    let we = word_end(s, i)?;
    let word = &s[i..we];
    let core = lower(trim_dots(word));
    let compound =
        core.chars().count() > 7 && (core.ends_with("straße") || core.ends_with("strasse"));
    let dotted = word.last() == Some(&'.');
    let compound = compound || (dotted && core.chars().count() > 4 && core.ends_with("str"));
    let standalone =
        starts_upper(word) && (core == "straße" || core == "strasse" || (core == "str" && dotted));
    let romance =
        starts_upper(word) && matches!(core.as_str(), "calle" | "via" | "rue" | "avenida" | "rua");
    if !(compound || standalone || romance) {
        return None;
    }
    let mut start = i;
    if standalone && i >= 2 && s[i - 1] == ' ' {
        let mut p = i - 1;
        while p > floor && s[p - 1].is_alphabetic() {
            p -= 1;
        }
        if p < i - 1 && boundary_before(s, p) && title_case(&s[p..i - 1]) {
            start = p;
        }
    }
    let mut k = we;
    let mut names = 0;
    loop {
        if s.get(k) != Some(&' ') {
            return None;
        }
        k += 1;
        if s.get(k).is_some_and(char::is_ascii_digit) {
            let mut e = k;
            while e < s.len() && e - k < 6 && s[e].is_ascii_digit() {
                e += 1;
            }
            if e - k > 5 {
                return None;
            }
            if s.get(e).is_some_and(char::is_ascii_alphabetic) && boundary_after(s, e + 1) {
                e += 1;
            }
            if !boundary_after(s, e) || (romance && names == 0) {
                return None;
            }
            return Some((start, e));
        }
        if names == 4 {
            return None;
        }
        let ne = word_end(s, k)?;
        let w = &s[k..ne];
        if !(is_particle(w) || title_case(w)) {
            return None;
        }
        names += 1;
        k = ne;
    }
}

/// `PO Box 123`, `P.O. Box 123`, `Post Office Box 123`.
fn po_box(s: &[char], i: usize) -> Option<(usize, usize)> {
    let mut k = i;
    if at_ci(s, k, "post office box") {
        k += 15;
    } else {
        for letter in ["p", "o"] {
            if !at_ci(s, k, letter) {
                return None;
            }
            k += 1;
            if s.get(k) == Some(&'.') {
                k += 1;
            }
            if s.get(k) == Some(&' ') {
                k += 1;
            }
        }
        if !at_ci(s, k, "box") {
            return None;
        }
        k += 3;
    }
    if s.get(k) == Some(&' ') {
        k += 1;
    }
    if s.get(k) == Some(&'#') {
        k += 1;
    } else if at_ci(s, k, "no.") {
        k += 3;
    }
    if s.get(k) == Some(&' ') {
        k += 1;
    }
    let a = k;
    while k < s.len() && k - a < 11 && s[k].is_ascii_digit() {
        k += 1;
    }
    ((1..=10).contains(&(k - a)) && boundary_after(s, k)).then_some((i, k))
}

// ------------------------------------------------------------------------------------------
// Chinese addresses

const CN_REGION: [char; 11] = [
    '省', '市', '区', '县', '镇', '乡', '村', '路', '街', '巷', '道',
];
const CN_UNIT: [char; 10] = ['号', '栋', '幢', '室', '楼', '座', '单', '弄', '层', '户'];

/// Chinese characters (and Japanese kana): scripts written without spaces between words.
fn is_cjk(c: char) -> bool {
    matches!(
        c,
        '\u{3040}'..='\u{30FF}'
            | '\u{3400}'..='\u{4DBF}'
            | '\u{4E00}'..='\u{9FFF}'
            | '\u{F900}'..='\u{FAFF}'
            | '\u{20000}'..='\u{3134F}'
    )
}

fn is_cn_run_char(c: char) -> bool {
    is_cjk(c) || c.is_ascii_alphanumeric() || matches!(c, '-' | '#')
}

fn cn_addresses(s: &[char]) -> Vec<char> {
    let n = s.len();
    let mut ed = Edit::new(s);
    let mut i = 0;
    while i < n {
        if !is_cn_run_char(s[i]) {
            i += 1;
            continue;
        }
        let start = i;
        i = run_end(s, i, is_cn_run_char);
        if let Some((a, e)) = cn_address(s, start, i) {
            ed.replace(a, e, ADDRESS);
        }
    }
    ed.finish()
}

/// In the run `s[start..end]`: from (up to three characters before) the first region or
/// street character to the last house number after it (`1号`, `3栋`, `502室`, `3-2-501`).
fn cn_address(s: &[char], start: usize, end: usize) -> Option<(usize, usize)> {
    let region = (start..end).find(|&k| CN_REGION.contains(&s[k]))?;
    let mut last = None;
    let mut k = region + 1;
    while k < end {
        if !s[k].is_ascii_digit() {
            k += 1;
            continue;
        }
        // A number right after a house number belongs to it (`3单元201`).
        let follows = last == Some(k);
        k = run_end(&s[..end], k, |c| c.is_ascii_digit());
        let mut dashed = false;
        while k + 1 < end && s[k] == '-' && s[k + 1].is_ascii_digit() {
            dashed = true;
            k = run_end(&s[..end], k + 1, |c| c.is_ascii_digit());
        }
        if k < end && CN_UNIT.contains(&s[k]) {
            // `1号楼`, `3单元`
            while k < end && (CN_UNIT.contains(&s[k]) || s[k] == '元') {
                k += 1;
            }
            last = Some(k);
        } else if dashed || follows {
            last = Some(k);
        }
    }
    let e = last?;
    // The province or city name before the first region character, not the words before it
    // (`地址`, `发往`).
    let mut a = region;
    while a > start && region - a < 3 && !CN_BEFORE_ADDRESS.contains(&s[a - 1]) {
        a -= 1;
    }
    Some((a, e))
}

/// Characters that end the words before an address: `地址`, `住址`, `发往`, `寄至`, `送到`.
const CN_BEFORE_ADDRESS: [char; 10] = ['址', '在', '往', '至', '到', '于', '为', '是', '寄', '：'];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (input, expected output) with no truncation.
    const CASES: &[(&str, &str)] = &[
        // Negatives: useful text survives.
        ("HTTP 429 Too Many Requests", "HTTP 429 Too Many Requests"),
        ("SKU-0001 quantity 5", "SKU-0001 quantity 5"),
        ("error_code=40001", "error_code=40001"),
        (
            r#"{"code":40001,"msg":"Invalid parameter"}"#,
            r#"{"code":40001,"msg":"Invalid parameter"}"#,
        ),
        (
            "sub_code=isv.invalid-parameter:price",
            "sub_code=isv.invalid-parameter:price",
        ),
        ("order 123456 not found", "order 123456 not found"),
        (
            "deadline 2026-11-22T10:00:00Z passed",
            "deadline 2026-11-22T10:00:00Z passed",
        ),
        (
            "at 2026-11-22 10:00:00.123456 +08:00 timeout",
            "at 2026-11-22 10:00:00.123456 +08:00 timeout",
        ),
        ("due 22.11.2026 14:05", "due 22.11.2026 14:05"),
        ("订单号123456不存在", "订单号123456不存在"),
        ("市场价123元", "市场价123元"),
        (
            "INVALID_PARAMETER_ERROR_2 for SKU-0001-BLUE-XL2024-LARGE",
            "INVALID_PARAMETER_ERROR_2 for SKU-0001-BLUE-XL2024-LARGE",
        ),
        ("sent 3 times via proxy", "sent 3 times via proxy"),
        (
            "Failed to upload 3 files to Google Drive",
            "Failed to upload 3 files to Google Drive",
        ),
        (
            "GET /api/v2/orders/detail returned 502 Bad Gateway",
            "GET /api/v2/orders/detail returned 502 Bad Gateway",
        ),
        ("price 12.50 USD, stock 3", "price 12.50 USD, stock 3"),
        ("Basic auth failed", "Basic auth failed"),
        ("Bearer token expired", "Bearer token expired"),
        ("token: missing", "token: missing"),
        (
            "did you call https://api.example.com/v1/orders?",
            "did you call https://api.example.com/v1/orders?",
        ),
        (
            "retry after 30s (attempt 2/5)",
            "retry after 30s (attempt 2/5)",
        ),
        // E-mail addresses.
        (
            "contact john.doe+shop@mail.example.co.uk now",
            "contact [email] now",
        ),
        ("邮箱john@example.com。谢谢", "邮箱[email]。谢谢"),
        ("buyer: Jane_Doe99@sub.domain.io, ok", "buyer: [email], ok"),
        ("write to name (at) domain.com", "write to [email]"),
        ("name[at]domain[dot]com", "[email]"),
        (
            "db user:hunter22@10.0.0.12 refused",
            "db user:[email] refused",
        ),
        ("ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ", "[email]"),
        ("mail jane @ example.org", "mail [email]"),
        ("/users/jane%40example.org/orders", "/users/[email]/orders"),
        ("用户@例子.中国", "[email]"),
        // Phones.
        ("call (415) 555-0132 today", "call [phone] today"),
        ("tel 415-555-0132", "tel [phone]"),
        ("tel 415.555.0132", "tel [phone]"),
        ("+1 (415) 555-0132", "[phone]"),
        ("+44 20 7946 0958 uk", "[phone] uk"),
        ("+49 (0)30 123456", "[phone]"),
        ("手机13800138000收货", "手机[phone]收货"),
        ("mobile 138 0013 8000", "mobile [phone]"),
        ("mobile +86 138-0013-8000", "mobile [phone]"),
        ("0086 13800138000", "[phone]"),
        ("8613800138000", "[phone]"),
        ("电话：１３８００１３８０００", "电话：[phone]"),
        ("138\u{200B}0013\u{200B}8000", "[phone]"),
        ("tel 415\u{2013}555\u{2013}0132", "tel [phone]"),
        ("expired (1763776800000)", "expired ([number])"),
        ("order 12345678 failed", "order [phone] failed"),
        // Cards and long numbers.
        ("card 4111 1111 1111 1111 declined", "card [card] declined"),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("pan=4111111111111111", "pan=[card]"),
        ("amex 378282246310005", "amex [card]"),
        ("typo 4111111111111112", "typo [number]"),
        ("tracking 12345678901234567890123", "tracking [number]"),
        // Secrets in URLs.
        (
            "GET https://api.example.com/v1/orders?access_token=abc123&page=2 failed",
            "GET https://api.example.com/v1/orders?[redacted] failed",
        ),
        (
            "callback http://shop.example.com/cb#token=xyz",
            "callback http://shop.example.com/cb?[redacted]",
        ),
        (
            "connect postgres://admin:s3cret@db.internal:5432/stock",
            "connect postgres://[redacted]@db.internal:5432/stock",
        ),
        (
            r#"{"url":"https://oapi.dingtalk.com/robot/send?access_token=0123abcd"}"#,
            r#"{"url":"https://oapi.dingtalk.com/robot/send?[redacted]"}"#,
        ),
        (
            "hook https://open.feishu.cn/open-apis/bot/v2/hook/8c2b1d2e-4f3a-4b5c-9d6e-7f8091a2b3c4 down",
            "hook https://open.feishu.cn/open-apis/bot/v2/hook/[token] down",
        ),
        (
            "链接https://x.cn/a?sign=abc，请检查",
            "链接https://x.cn/a?[redacted]，请检查",
        ),
        // key=value secrets.
        ("password=hunter2 rejected", "password=[redacted] rejected"),
        (
            "app_key=12345&sign=ABCDEF&v=2.0",
            "app_key=[redacted]&sign=[redacted]&v=2.0",
        ),
        (
            r#"{"client_secret": "abc", "user": "bob"}"#,
            r#"{"client_secret": "[redacted]", "user": "bob"}"#,
        ),
        (
            r#"{\"session\":\"abc\",\"ok\":true}"#,
            r#"{\"session\":\"[redacted]\",\"ok\":true}"#,
        ),
        ("X-Api-Key: AKIAEXAMPLE", "X-Api-Key: [redacted]"),
        ("Authorization: Bearer abc.def", "Authorization: [redacted]"),
        (
            "Cookie: sid=abc; theme=dark; HttpOnly",
            "Cookie: [redacted]; HttpOnly",
        ),
        ("密码：hunter2，请重试", "密码：[redacted]，请重试"),
        ("验证码: 123456", "验证码: [redacted]"),
        ("code=4/0AX4XfWhABC", "code=[redacted]"),
        ("auth_code=123", "auth_code=[redacted]"),
        ("user=bob&pass=hunter2", "user=bob&pass=[redacted]"),
        ("token: Authorization: Bearer abc", "token: [redacted]"),
        ("{\"code\": (client_secret: abc)", "{\"code\": [redacted])"),
        ("tokens: [\"a\",\"b\"]", "tokens: [redacted]"),
        // Bearer / Basic.
        ("header Bearer abc123.def-ghi", "header Bearer [redacted]"),
        ("sent Basic dXNlcjpwYXNz", "sent Basic [redacted]"),
        // Tokens.
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
            "jwt [token] ok",
        ),
        (
            "secret SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "secret [token]",
        ),
        (
            "key sk_live_51H8abcDEF0123456789xyz used",
            "key [token] used",
        ),
        (
            "digest e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "digest [token]",
        ),
        ("order_id=1234567890abcdef12345678x", "order_id=[token]"),
        // Addresses.
        (
            "ship to 1600 Amphitheatre Parkway, Mountain View",
            "ship to [address], Mountain View",
        ),
        ("221B Baker Street", "[address]"),
        ("deliver 350 5th Ave, Suite 3300 NY", "deliver [address] NY"),
        ("at 42 Oak Ln, Apt 4B.", "at [address]."),
        ("12 rue de la Paix, Paris", "[address], Paris"),
        ("Calle Mayor 12, Madrid", "[address], Madrid"),
        ("Via Roma 5", "[address]"),
        ("Hauptstraße 5a Berlin", "[address] Berlin"),
        ("Berliner Straße 12", "[address]"),
        ("PO Box 1234", "[address]"),
        ("P.O. Box 77 returned", "[address] returned"),
        ("地址：广东省深圳市南山区科技园路1号", "地址：[address]"),
        (
            "收货地址:北京市朝阳区建国路88号3栋502室，电话13800138000",
            "收货地址:[address]，电话[phone]",
        ),
        ("朝阳区某某小区3-2-501", "[address]"),
        ("北京市海淀区中关村南大街5号院3单元201", "[address]"),
        ("发往江苏省南京市鼓楼区中山路18号", "发往[address]"),
        (
            "Anna, Hauptstr. 12, 10115 Berlin",
            "Anna, [address], 10115 Berlin",
        ),
        // Names after a cue word.
        (
            "upstream 503: buyer Jane Q. Buyer not found",
            "upstream 503: buyer [name] not found",
        ),
        (
            "{\"buyer_name\": \"Jane Doe\"}",
            "{\"buyer_name\": \"[name]\"}",
        ),
        (
            "Recipient: Li Wei, phone missing",
            "Recipient: [name], phone missing",
        ),
        ("收件人：张伟 地址不完整", "收件人：[name] 地址不完整"),
        ("the customer INVALID_STATE", "the customer INVALID_STATE"),
        ("ship to O'Brien-Smith", "ship to [name]"),
        // Whitespace and control characters.
        ("  line1\n\tline2\r\n  ", "line1 line2"),
        ("a\u{0}b\u{7}c", "a b c"),
    ];

    #[test]
    fn example_table() {
        let mut failures = Vec::new();
        for &(input, want) in CASES {
            let got = scrub(input, 10_000);
            if got != want {
                failures.push(format!(
                    "\n  in:   {input:?}\n  want: {want:?}\n  got:  {got:?}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:{}",
            failures.len(),
            failures.concat()
        );
        assert!(CASES.len() >= 40);
    }

    #[test]
    fn truncation_counts_chars_and_marks_the_cut() {
        assert_eq!(scrub("hello world", 0), "");
        assert_eq!(scrub("hello world", 1), "…");
        assert_eq!(scrub("hello world", 11), "hello world");
        assert_eq!(scrub("hello world", 10), "hello wor…");
        // The space before a cut is dropped, the result is shorter, never longer.
        assert_eq!(scrub("hello world", 7), "hello…");
        assert_eq!(scrub("订单不存在请检查", 5), "订单不存…");
        assert_eq!(scrub("🚀🚀🚀", 2), "🚀…");
        // Scrubbing happens first: a cut e-mail address cannot survive.
        assert_eq!(scrub("john@example.com", 5), "[ema…");
        assert_eq!(scrub("x 13800138000", 4), "x […");
    }

    #[test]
    fn pathological_inputs_finish() {
        let inputs = [
            "a-".repeat(5000),
            "1 ".repeat(5000),
            "1-".repeat(5000),
            "@a".repeat(5000),
            "a@".repeat(5000),
            "a.".repeat(5000),
            "key=".repeat(3000),
            "token:".repeat(3000),
            "://".repeat(3000),
            "http://a?".repeat(1000),
            "\"password\":\"".repeat(1000),
            "1 Main ".repeat(2000),
            "Via Roma ".repeat(2000),
            "市1号".repeat(3000),
            "(at)".repeat(3000),
            "Bearer ".repeat(2000),
            "9".repeat(20_000),
            "aZ9/".repeat(5000),
            "eyJabcdefghij.".repeat(2000),
        ];
        for input in inputs {
            let out = scrub(&input, 2000);
            assert!(out.chars().count() <= 2000);
        }
    }

    /// Scrubs a ~10 KB message repeatedly; run with
    /// `cargo test -p stockade-alerts --release --lib scrub -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, release only"]
    fn ten_kilobytes_in_well_under_a_millisecond() {
        let piece = "Order 12345678 for john.doe@example.com failed: HTTP 429 at \
                     https://api.example.com/v1/x?sign=abc&ts=1 (retry 2026-11-22T10:00:00Z) \
                     ship to 221B Baker Street, 北京市朝阳区建国路88号 token=abcdef \
                     SKU-0001 card 4111 1111 1111 1111 ";
        let text = piece.repeat(10_000 / piece.len() + 1);
        let start = std::time::Instant::now();
        let rounds = 200;
        for _ in 0..rounds {
            std::hint::black_box(scrub(std::hint::black_box(&text), 2000));
        }
        let per = start.elapsed() / rounds;
        println!("{} bytes: {per:?} per scrub", text.len());
        assert!(per < std::time::Duration::from_millis(1), "{per:?}");
    }

    // ------------------------------------------------------------------ property tests

    /// A value planted into random text, and the strings that must not survive.
    #[derive(Debug, Clone)]
    struct Planted {
        text: String,
        secrets: Vec<String>,
    }

    fn plain(text: String) -> Planted {
        Planted {
            secrets: vec![text.clone()],
            text,
        }
    }

    /// The text and, for 7+ digits, the digits without separators.
    fn with_digits(text: String) -> Planted {
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        let mut secrets = vec![text.clone()];
        if digits.len() >= 7 {
            secrets.push(digits);
        }
        Planted { text, secrets }
    }

    fn has_letter_and_digit(t: &str) -> bool {
        t.chars().any(|c| c.is_ascii_alphabetic()) && t.chars().any(|c| c.is_ascii_digit())
    }

    fn email() -> impl Strategy<Value = Planted> {
        (
            "[a-z0-9]{1,10}(\\.[a-z0-9]{1,8})?(\\+[a-z0-9]{1,6})?",
            "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]{1,10})?",
            "(com|net|org|cn|io|de|co\\.uk)",
            0..6u8,
        )
            .prop_map(|(local, domain, tld, form)| {
                let plain = format!("{local}@{domain}.{tld}");
                let text = match form {
                    0 | 1 => plain.clone(),
                    2 => format!("{local} (at) {domain}.{tld}"),
                    3 => format!("{local}[at]{domain}[dot]{tld}"),
                    4 => format!("{local} @ {domain}.{tld}"),
                    _ => format!("{}@{domain}.{tld}", local.to_uppercase()),
                };
                Planted {
                    secrets: vec![text.clone(), plain],
                    text,
                }
            })
    }

    fn phone() -> impl Strategy<Value = Planted> {
        let north_american = ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}", 0..6u8).prop_map(
            |(area, exchange, line, form)| {
                with_digits(match form {
                    0 => format!("({area}) {exchange}-{line}"),
                    1 => format!("{area}-{exchange}-{line}"),
                    2 => format!("{area}.{exchange}.{line}"),
                    3 => format!("+1 {area} {exchange} {line}"),
                    4 => format!("{area}\u{2013}{exchange}\u{2013}{line}"),
                    _ => format!("+1 ({area}) {exchange}-{line}"),
                })
            },
        );
        let international = (
            "[1-9][0-9]{0,2}",
            proptest::collection::vec("[0-9]{1,4}", 2..5),
            0..5usize,
        )
            .prop_filter_map("7 to 15 digits", |(cc, groups, form)| {
                let total = cc.len() + groups.iter().map(String::len).sum::<usize>();
                if !(7..=15).contains(&total) {
                    return None;
                }
                let text = match form {
                    4 => format!("+{cc} ({}) {}", groups[0], groups[1..].join(" ")),
                    _ => format!("+{cc} {}", groups.join([" ", "-", ".", " "][form])),
                };
                Some(with_digits(text))
            });
        let chinese = ("1[3-9][0-9]", "[0-9]{4}", "[0-9]{4}", 0..3usize, 0..5usize).prop_map(
            |(a, b, c, form, prefix)| {
                let body = match form {
                    0 => format!("{a}{b}{c}"),
                    1 => format!("{a} {b} {c}"),
                    _ => format!("{a}-{b}-{c}"),
                };
                with_digits(format!(
                    "{}{body}",
                    ["", "+86 ", "86 ", "0086 ", "+86-"][prefix]
                ))
            },
        );
        prop_oneof![north_american, international, chinese]
    }

    fn luhn_check_digit(payload: &[u32]) -> u32 {
        let sum: u32 = payload
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &x)| match (i % 2, x * 2) {
                (0, y) if y > 9 => y - 9,
                (0, y) => y,
                _ => x,
            })
            .sum();
        (10 - sum % 10) % 10
    }

    fn group(digits: &str, sep: &str) -> String {
        let chars: Vec<char> = digits.chars().collect();
        chars
            .chunks(4)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(sep)
    }

    fn card() -> impl Strategy<Value = Planted> {
        (
            3u32..7,
            proptest::collection::vec(0u32..10, 11..=17),
            0..4u8,
            any::<bool>(),
        )
            .prop_map(|(first, body, form, valid)| {
                let mut d = vec![first];
                d.extend(body);
                let check = luhn_check_digit(&d);
                d.push(if valid { check } else { (check + 1) % 10 });
                assert_eq!(luhn(&d), valid);
                let digits: String = d
                    .iter()
                    .map(|&x| char::from_digit(x, 10).unwrap())
                    .collect();
                with_digits(match form {
                    1 if valid => group(&digits, " "),
                    2 if valid => group(&digits, "-"),
                    _ => digits,
                })
            })
    }

    const SUFFIXES: &[&str] = &[
        "Street",
        "street",
        "St",
        "St.",
        "ST",
        "Avenue",
        "Ave",
        "ave.",
        "Road",
        "Rd",
        "Rd.",
        "Boulevard",
        "Blvd",
        "Lane",
        "Ln",
        "Drive",
        "Dr",
        "Dr.",
        "Court",
        "Ct",
        "Way",
        "Place",
        "Pl",
        "Terrace",
        "Highway",
        "Hwy",
        "Parkway",
        "Pkwy",
        "Square",
        "Sq",
        "Strasse",
        "Straße",
    ];

    fn address() -> impl Strategy<Value = Planted> {
        let english = (
            1u32..100_000,
            proptest::collection::vec("[A-Z][a-z]{2,9}", 1..4),
            proptest::sample::select(SUFFIXES),
            proptest::option::of(("(Apt|Suite|Unit|#)", 1u32..999)),
        )
            .prop_map(|(number, words, suffix, unit)| {
                let mut text = format!("{number} {} {suffix}", words.join(" "));
                if let Some((kind, n)) = unit {
                    let sep = if kind == "#" { "" } else { " " };
                    text.push_str(&format!(", {kind}{sep}{n}"));
                }
                plain(text)
            });
        let european = (0..4usize, "[A-Z][a-z]{2,9}", 1u32..500).prop_map(|(form, name, n)| {
            plain(match form {
                0 => format!("Calle {name} {n}"),
                1 => format!("Via {name} {n}"),
                2 => format!("{name}straße {n}"),
                _ => format!("{n} rue de la {name}"),
            })
        });
        let po_box = (0..3usize, 1u32..100_000).prop_map(|(form, n)| {
            plain(format!(
                "{} {n}",
                ["PO Box", "P.O. Box", "Post Office Box"][form]
            ))
        });
        let chinese = (
            proptest::sample::select(&["广东省", "浙江省", "四川省", ""][..]),
            proptest::sample::select(&["深圳市", "杭州市", "成都市"][..]),
            proptest::sample::select(&["南山区", "西湖区", "武侯区", ""][..]),
            "[\u{4e00}-\u{9fa5}]{2,4}",
            proptest::sample::select(&["路", "街", "大道"][..]),
            1u32..2000,
            proptest::option::of((1u32..30, 101u32..3000)),
        )
            .prop_map(|(province, city, district, name, street, n, unit)| {
                let mut text = format!("{province}{city}{district}{name}{street}{n}号");
                if let Some((building, room)) = unit {
                    text.push_str(&format!("{building}栋{room}室"));
                }
                plain(text)
            });
        prop_oneof![3 => english, 1 => european, 1 => po_box, 1 => chinese]
    }

    fn secret_value() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]{8,24}".prop_filter("letters and digits", |v| has_letter_and_digit(v))
    }

    fn token() -> impl Strategy<Value = Planted> {
        let raw = "[A-Za-z0-9]{24,48}"
            .prop_filter("letters and digits", |t| has_letter_and_digit(t))
            .prop_map(plain);
        let dingtalk = "[0-9a-f]{64}"
            .prop_filter("letters and digits", |t| has_letter_and_digit(t))
            .prop_map(|hex| plain(format!("SEC{hex}")));
        let prefixed = (
            proptest::sample::select(&["sk_live_", "ghp_", "xoxb-", "AKIA"][..]),
            "[A-Za-z0-9]{24,36}".prop_filter("letters and digits", |t| has_letter_and_digit(t)),
        )
            .prop_map(|(prefix, body)| Planted {
                text: format!("{prefix}{body}"),
                secrets: vec![format!("{prefix}{body}"), body],
            });
        let jwt = (
            "[A-Za-z0-9_-]{10,40}",
            "[A-Za-z0-9_-]{10,60}",
            "[A-Za-z0-9_-]{10,60}",
        )
            .prop_map(|(header, payload, signature)| Planted {
                text: format!("eyJ{header}.{payload}.{signature}"),
                secrets: vec![format!("eyJ{header}.{payload}.{signature}"), signature],
            });
        prop_oneof![raw, dingtalk, prefixed, jwt]
    }

    fn url_secret() -> impl Strategy<Value = Planted> {
        (
            "[a-z]{3,10}",
            "(com|cn|io|net)",
            "[a-z0-9]{1,10}",
            proptest::sample::select(
                &[
                    "token",
                    "access_token",
                    "sign",
                    "sig",
                    "key",
                    "code",
                    "session",
                    "state",
                ][..],
            ),
            secret_value(),
            0..4u8,
        )
            .prop_map(|(host, tld, path, key, value, form)| Planted {
                text: match form {
                    0 => format!("https://{host}.{tld}/{path}?{key}={value}&x=1"),
                    1 => format!("http://{host}.{tld}/{path}#{key}={value}"),
                    2 => format!("https://user:{value}@{host}.{tld}/{path}"),
                    _ => format!("wss://{host}.{tld}/{path}/?a=1&{key}={value}"),
                },
                secrets: vec![value],
            })
    }

    fn key_value_secret() -> impl Strategy<Value = Planted> {
        (0..11usize, secret_value()).prop_map(|(form, v)| {
            use base64::Engine as _;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("user:{v}"));
            let text = match form {
                0 => format!("password={v}"),
                1 => format!("\"api_key\": \"{v}\""),
                2 => format!("client_secret: {v}"),
                3 => format!("X-Auth-Token: {v}"),
                4 => format!("Authorization: Bearer {v}"),
                5 => format!("Bearer {v}"),
                6 => format!("Cookie: theme=dark; session={v}"),
                7 => format!("密码：{v}"),
                8 => format!("{{\"access_token\":\"{v}\"}}"),
                9 => format!("Authorization: Basic {basic}"),
                _ => format!("Basic {basic}"),
            };
            Planted {
                text,
                secrets: vec![v, basic],
            }
        })
    }

    fn pii() -> impl Strategy<Value = Planted> {
        let one = prop_oneof![
            email(),
            phone(),
            card(),
            address(),
            token(),
            url_secret(),
            key_value_secret(),
        ];
        // Sometimes glued inside punctuation or a JSON string.
        (one, 0..6usize).prop_map(|(p, wrap)| {
            let (open, close) = [
                ("", ""),
                ("{\"msg\":\"", "\"}"),
                ("(", ")"),
                ("「", "」"),
                ("'", "'"),
                ("<", ">"),
            ][wrap];
            Planted {
                text: format!("{open}{}{close}", p.text),
                secrets: p.secrets,
            }
        })
    }

    const FILLER: &[&str] = &[
        "error",
        "failed",
        "HTTP",
        "429",
        "Too",
        "Many",
        "Requests",
        "SKU-0001",
        "quantity",
        "5",
        "订单",
        "不存在",
        "，",
        "。",
        "请求失败",
        "{\"code\":",
        "40001,",
        "\"msg\":",
        "\"invalid",
        "param\"}",
        "[",
        "]",
        "(",
        ")",
        ":",
        ";",
        "-",
        "—",
        "…",
        "2026-11-22T10:00:00Z",
        "10:30",
        "at",
        "retry",
        "after",
        "30s",
        "ünïcødé",
        "🚀",
        "null",
        "true",
        "&",
        "=",
        "%",
        "#",
        "/",
        "\\",
        "'",
        "\"",
        "Ωμέγα",
        "Привет",
        "\n",
        "\t",
        "\u{200B}",
        "Error:",
        "timeout",
        "v1.2.3",
        "Main",
        "Street",
        "Via",
        "Bearer",
        "Basic",
        "token:",
        "key=",
        "code=",
        "@",
        "https://example.com/a/b",
        "12.5%",
        "N/A",
        "Authorization:",
        "\"password\":",
        "Cookie:",
        "{",
        "}",
        "收货地址",
        "手机",
        "区",
        "号",
    ];

    fn filler() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(FILLER).prop_map(str::to_owned),
            2 => "[a-z]{1,10}",
            1 => "[A-Z][a-z]{1,8}",
            1 => "[\u{4e00}-\u{9fa5}]{1,6}",
            1 => any::<char>().prop_map(|c| c.to_string()),
            1 => "[0-9]{1,4}",
        ]
    }

    fn assert_clean(text: &str, out: &str, planted: &[Planted]) -> Result<(), TestCaseError> {
        for p in planted {
            for secret in &p.secrets {
                prop_assert!(
                    !out.contains(secret.as_str()),
                    "{secret:?} survived\n in: {text:?}\nout: {out:?}"
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2500,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Planted personal data and secrets never survive, whatever surrounds them.
        #[test]
        fn planted_values_never_survive(
            words in proptest::collection::vec(filler(), 0..30),
            planted in proptest::collection::vec(
                (pii(), any::<proptest::sample::Index>(), any::<(bool, bool)>()),
                1..4,
            ),
            max in 0usize..=2000,
        ) {
            // (text, glue to a CJK neighbour on the left, on the right)
            let mut pieces: Vec<(String, bool, bool)> =
                words.into_iter().map(|w| (w, false, false)).collect();
            let mut values = Vec::new();
            for (p, at, (left, right)) in planted {
                pieces.insert(at.index(pieces.len() + 1), (p.text.clone(), left, right));
                values.push(p);
            }
            let mut text = String::new();
            for (k, (piece, left, _)) in pieces.iter().enumerate() {
                if k > 0 {
                    let (prev, _, prev_right) = &pieces[k - 1];
                    let glue = (*left && prev.chars().last().is_some_and(is_cjk))
                        || (*prev_right && piece.chars().next().is_some_and(is_cjk));
                    if !glue {
                        text.push(' ');
                    }
                }
                text.push_str(piece);
            }
            let out = scrub(&text, max);
            prop_assert!(out.chars().count() <= max);
            assert_clean(&text, &out, &values)?;
            let full = scrub(&text, usize::MAX);
            assert_clean(&text, &full, &values)?;
        }

        /// Any input: no panic, never longer than the maximum.
        #[test]
        fn arbitrary_text_respects_the_maximum(text in any::<String>(), max in 0usize..=2000) {
            let out = scrub(&text, max);
            prop_assert!(out.chars().count() <= max);
            prop_assert!(!out.starts_with(' ') && !out.ends_with(' '));
            prop_assert!(!out.chars().any(char::is_control));
        }

        /// Inputs dense in the characters the scanners look at.
        #[test]
        fn scanner_soup_respects_the_maximum(
            text in "[0-9a-zA-Z .()+\\-@:=/?#&\"'\\[\\]{}_\\\\号路市区省栋室，：\u{200B}\n]{0,400}",
            max in 0usize..=2000,
        ) {
            let out = scrub(&text, max);
            prop_assert!(out.chars().count() <= max);
        }
    }
}
