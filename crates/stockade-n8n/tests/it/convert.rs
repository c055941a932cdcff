use crate::{import, lint};

#[test]
fn dump() {
    for f in ["seller-order-sync.json", "n8n-if-v2-number.json", "n8n-merge-append.json"] {
        let i = import(f);
        for w in &i.workflows {
            println!("{}\n{}", w.yaml, w.report());
        }
        for p in lint(&i) {
            println!("{p:?}");
        }
    }
}
