//! Damaged input never panics the linter, and every problem still has a position.

use proptest::prelude::*;
use stockade_workflows::{LintOptions, lint_document};

const EXAMPLES: [&str; 4] = [
    include_str!("../../../../examples/workflows/low-stock-alert.yaml"),
    include_str!("../../../../examples/workflows/order-created-note.yaml"),
    include_str!("../../../../examples/workflows/supplier-stock-webhook.yaml"),
    include_str!("../../../../examples/workflows/supplier-reorder.yaml"),
];

fn mutate(text: &str, edits: &[(usize, char, u8)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for &(at, c, op) in edits {
        let i = at % chars.len().max(1);
        match op {
            0 if !chars.is_empty() => {
                chars.remove(i);
            }
            1 => chars.insert(i, c),
            _ if !chars.is_empty() => chars[i] = c,
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn special() -> impl Strategy<Value = char> {
    prop_oneof![
        Just('{'),
        Just('}'),
        Just(':'),
        Just('-'),
        Just(' '),
        Just('\n'),
        Just('&'),
        Just('*'),
        Just('"'),
        Just('%'),
        any::<char>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mutated_examples_never_panic(
        which in 0usize..4,
        edits in prop::collection::vec((any::<usize>(), special(), 0u8..3), 1..6),
    ) {
        let text = mutate(EXAMPLES[which], &edits);
        let linted = lint_document(&text, &LintOptions::default());
        for p in &linted.problems {
            prop_assert!(p.pos.line >= 1, "{p:?}");
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = lint_document(&text, &LintOptions::default());
    }
}
