//! `script` steps: the code compiles (checked without running it), uses nothing a
//! script step cannot have, and asks for no limit above the configured maxima.
//!
//! Each problem is reported at the YAML line of the script line it is about: a block
//! scalar (`code: |`) starts on the line after its key, a one-line string on the key's
//! own line. The forbidden uses are found in the code with its comments and string
//! literals blanked, so `"fetch("` in a message is not one; the sandbox refuses them at
//! run time anyway (this tells the author earlier, and what to use instead).

use std::sync::OnceLock;

use super::{LintOptions, Report, Rule};
use crate::definition::{Step, Workflow};
use crate::expr;
use crate::yaml::{Located, Node, Pos};

/// The engines the syntax check compiles in (nothing is run).
fn pool() -> &'static stockade_script::Pool {
    static POOL: OnceLock<stockade_script::Pool> = OnceLock::new();
    POOL.get_or_init(|| stockade_script::Pool::new(1))
}

/// How a forbidden name is used.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// `name(` (spaces allowed before the parenthesis).
    Call,
    /// `name` as a whole word.
    Word,
    /// `name.`
    Member,
    /// The exact text.
    Text,
}

/// Forbidden uses: the text, how it is used, and what to do instead.
const FORBIDDEN: &[(&str, Use, &str)] = &[
    (
        "require",
        Use::Call,
        "`require` loads modules, which a script step cannot: the data it needs comes in through `input` and `nodes`, and HTTP is an `http.request` step",
    ),
    (
        "import",
        Use::Word,
        "`import` loads modules, which a script step cannot: the data it needs comes in through `input` and `nodes`",
    ),
    (
        "fetch",
        Use::Call,
        "a script has no network: make the request in an `http.request` step (declared host, through egress, audited) and pass its output in `input`",
    ),
    (
        "$env",
        Use::Word,
        "a script cannot read environment variables: secrets live in the credential store (an `http.request` step's `credential`), settings in the workflow's `inputs`",
    ),
    (
        "process",
        Use::Member,
        "a script has no `process` (no environment, no exit): secrets live in the credential store, settings in the workflow's `inputs`",
    ),
    (
        "this.helpers",
        Use::Text,
        "n8n's HTTP helpers do not exist here: make the request in an `http.request` step and pass its output in `input`",
    ),
    (
        "$http",
        Use::Word,
        "n8n's HTTP helpers do not exist here: make the request in an `http.request` step and pass its output in `input`",
    ),
    (
        "eval",
        Use::Call,
        "strings never become code in a script step: write the code itself",
    ),
    (
        "Function",
        Use::Call,
        "strings never become code in a script step (the Function constructor is refused): write the function itself",
    ),
    (
        "setTimeout",
        Use::Word,
        "a script has no timers: wait between steps with a `wait` step",
    ),
    (
        "setInterval",
        Use::Word,
        "a script has no timers: repeat with a schedule trigger or a `for_each` step",
    ),
    (
        ".constructor.constructor",
        Use::Text,
        "reaching the Function constructor is refused (a known sandbox escape): write the code itself",
    ),
];

/// Check every `script` step of `w` (`text` is the document, for block positions).
pub(crate) fn check(w: &Workflow, text: &str, options: &LintOptions, report: &mut Report) {
    for step in w.all_steps() {
        if step.uses.value == "script" {
            check_step(step, text, options, report);
        }
    }
}

fn check_step(step: &Step, text: &str, options: &LintOptions, report: &mut Report) {
    if let Some(limits) = step.param("limits") {
        check_limits(limits, options, report);
    }
    let Some(code) = step.param("code") else {
        return;
    };
    let Node::Str(source) = &code.value else {
        return;
    };
    let at = |line: u32, col: usize| script_pos(code.pos, text, line, col);
    if let Err(e) = pool().check(source) {
        let line = e.line.unwrap_or(1);
        let message = format!("script line {line}: {}", e.message);
        report.add(at(line, 0), Rule::Script, message);
    }
    let cleaned = blank_comments_and_strings(source);
    for (n, line) in cleaned.lines().enumerate() {
        for (needle, how, instead) in FORBIDDEN {
            if let Some(col) = find_use(line, needle, *how) {
                let number = u32::try_from(n + 1).unwrap_or(u32::MAX);
                let what = needle.trim_start_matches('.');
                let message = format!("script line {number}: `{what}` is not available: {instead}");
                report.add(at(number, col), Rule::Script, message);
            }
        }
    }
}

/// Literal limits above the maxima, or malformed.
fn check_limits(limits: &Located<Node>, options: &LintOptions, report: &mut Report) {
    let Node::Map(entries) = &limits.value else {
        if limits
            .value
            .as_str()
            .is_none_or(|t| !expr::has_expression(t))
        {
            report.add(
                limits.pos,
                Rule::Script,
                "`limits` is a mapping of memory_mb, time_ms and output_kb",
            );
        }
        return;
    };
    for (key, value) in entries {
        if value.value.as_str().is_some_and(expr::has_expression) {
            continue; // checked when the step runs
        }
        let one = serde_json::json!({ key.value.clone(): value.value.to_json() });
        if let Err(e) = options.script.resolve(Some(&one)) {
            report.add(value.pos, Rule::Script, e);
        }
    }
}

/// The YAML position of script line `line` (1-based), column `col` (0-based). The
/// parser places a block scalar (`code: |`) at its first content line; anything else
/// is reported at its own position.
fn script_pos(code: Pos, text: &str, line: u32, col: usize) -> Pos {
    let nth = |n: u64| {
        text.lines()
            .nth(usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX))
    };
    let indicator = nth(code.line.saturating_sub(1))
        .and_then(|prev| prev.split_whitespace().next_back())
        .is_some_and(|t| {
            t.starts_with(['|', '>'])
                && t[1..]
                    .chars()
                    .all(|c| c == '+' || c == '-' || c.is_ascii_digit())
        });
    if !indicator {
        return code;
    }
    let yaml_line = code.line + u64::from(line.saturating_sub(1));
    let indent = nth(yaml_line).map_or(0, |l| l.len() - l.trim_start().len());
    Pos {
        line: yaml_line,
        col: u64::try_from(indent + col + 1).unwrap_or(u64::MAX),
    }
}

fn ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// The byte column of the first use of `needle` in `line`, if any.
fn find_use(line: &str, needle: &str, how: Use) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = line.get(from..).and_then(|rest| rest.find(needle)) {
        let at = from + i;
        from = at + needle.len();
        let before = line[..at].chars().next_back();
        let after = line[from..].trim_start();
        let clean_left = how == Use::Text || !before.is_some_and(|c| ident(c) || c == '.');
        let ok = clean_left
            && match how {
                Use::Call => after.starts_with('('),
                Use::Word => !line[from..].chars().next().is_some_and(ident),
                Use::Member => after.starts_with('.'),
                Use::Text => true,
            };
        if ok {
            return Some(at);
        }
    }
    None
}

/// `code` with its comments and the insides of its string literals replaced by spaces
/// (line breaks kept, so lines still match).
fn blank_comments_and_strings(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        out.push('\n');
                        break;
                    }
                    out.push(' ');
                }
                out.push(' ');
            }
            '/' if chars.peek() == Some(&'*') => {
                out.push(' ');
                let mut last = ' ';
                for d in chars.by_ref() {
                    out.push(if d == '\n' { '\n' } else { ' ' });
                    if last == '*' && d == '/' {
                        break;
                    }
                    last = d;
                }
            }
            '"' | '\'' | '`' => {
                out.push(c);
                let mut escaped = false;
                for d in chars.by_ref() {
                    if d == '\n' {
                        out.push('\n');
                        if c != '`' {
                            break;
                        }
                        continue;
                    }
                    if !escaped && d == c {
                        out.push(c);
                        break;
                    }
                    escaped = !escaped && d == '\\';
                    out.push(' ');
                }
            }
            other => out.push(other),
        }
    }
    out
}
