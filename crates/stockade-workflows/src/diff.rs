//! A line diff between two versions of a workflow file, for `stockade workflow diff`.
//!
//! Pure and bounded: the common prefix and suffix are trimmed, and the lines between are
//! compared with a longest-common-subsequence table only while it stays under
//! [`MAX_CELLS`] cells; beyond that the middle is shown as removed, then added (still a
//! correct diff, only a coarser one). Output lines start with `-`, `+` or a space, in the
//! usual unified style without hunk headers: every line of both files is shown once.

/// The largest LCS table computed (rows × columns), about 16 MB of `u32`.
pub const MAX_CELLS: usize = 4_000_000;

/// One line of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The line diff turning `old` into `new`.
pub fn diff_lines<'a>(old: &'a str, new: &'a str) -> Vec<Line<'a>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (mid_a, mid_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut out: Vec<Line<'a>> = a[..prefix].iter().map(|l| Line::Same(l)).collect();
    if mid_a.len().saturating_mul(mid_b.len()) <= MAX_CELLS {
        out.extend(lcs(mid_a, mid_b));
    } else {
        out.extend(mid_a.iter().map(|l| Line::Removed(l)));
        out.extend(mid_b.iter().map(|l| Line::Added(l)));
    }
    out.extend(a[a.len() - suffix..].iter().map(|l| Line::Same(l)));
    out
}

/// The diff as text: `-` removed, `+` added, ` ` unchanged, one line each.
pub fn render(lines: &[Line<'_>]) -> String {
    let mut s = String::new();
    for l in lines {
        let (mark, text) = match l {
            Line::Same(t) => (' ', t),
            Line::Removed(t) => ('-', t),
            Line::Added(t) => ('+', t),
        };
        s.push(mark);
        s.push_str(text);
        s.push('\n');
    }
    s
}

/// Whether a diff changes anything.
pub fn changed(lines: &[Line<'_>]) -> bool {
    lines.iter().any(|l| !matches!(l, Line::Same(_)))
}

/// Classic LCS by dynamic programming over suffixes, then one walk from the start.
fn lcs<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Line<'a>> {
    let (n, m) = (a.len(), b.len());
    let width = m + 1;
    // table[i * width + j]: LCS length of a[i..] and b[j..].
    let mut table = vec![0u32; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let v = if a[i] == b[j] {
                table[(i + 1) * width + j + 1] + 1
            } else {
                table[(i + 1) * width + j].max(table[i * width + j + 1])
            };
            table[i * width + j] = v;
        }
    }
    let mut out = Vec::with_capacity(n + m);
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            out.push(Line::Same(a[i]));
            i += 1;
            j += 1;
        } else if table[(i + 1) * width + j] >= table[i * width + j + 1] {
            out.push(Line::Removed(a[i]));
            i += 1;
        } else {
            out.push(Line::Added(b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| Line::Removed(l)));
    out.extend(b[j..].iter().map(|l| Line::Added(l)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_removed_then_added_between_unchanged_ones() {
        let d = diff_lines("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(render(&d), " a\n-b\n+B\n c\n+d\n");
        assert!(changed(&d));
        assert!(!changed(&diff_lines("x\ny\n", "x\ny\n")));
    }

    #[test]
    fn moved_lines_keep_the_longest_common_run() {
        let d = diff_lines("1\n2\n3\n4\n", "2\n3\n4\n1\n");
        assert_eq!(render(&d), "-1\n 2\n 3\n 4\n+1\n");
    }

    #[test]
    fn a_huge_middle_falls_back_to_remove_then_add() {
        let old: String = (0..2100).map(|i| format!("o{i}\n")).collect();
        let new: String = (0..2100).map(|i| format!("n{i}\n")).collect();
        let d = diff_lines(&old, &new);
        assert_eq!(d.len(), 4200);
        assert!(matches!(d[0], Line::Removed("o0")));
        assert!(matches!(d[2100], Line::Added("n0")));
    }
}
