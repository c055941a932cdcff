//! n8n's graph made into Stockade's nested step lists.
//!
//! n8n runs a DAG of nodes (with loops back to a Split In Batches node); Stockade runs a
//! list of steps whose `if`/`switch`/`for_each` steps hold nested lists. This module
//! decides, deterministically, the order nodes are visited in (a topological order,
//! ties broken by position on the canvas, left to right then top to bottom, then by
//! name) and the *branch context* of each node: the chain of (branch node, output) it
//! sits under. A node fed from several branches is placed after them, at their
//! deepest common context, and that is reported.
//!
//! Invariants: every node is visited once; edges through disabled nodes are bypassed
//! (n8n passes items through a disabled node); back edges are removed and listed;
//! nothing here panics on any graph.

use std::collections::BTreeSet;

use crate::model::{Edge, Node, Workflow};

/// One level of nesting: a branch node and the output index the node hangs under.
pub type Ctx = Vec<(usize, usize)>;

/// The graph prepared for flattening.
#[derive(Debug)]
pub struct Plan {
    pub order: Vec<usize>,
    pub ctx: Vec<Ctx>,
    /// Live edges (disabled nodes bypassed, back edges and error outputs removed).
    pub edges: Vec<Edge>,
    /// Edges that closed a loop (to a Split In Batches node they are the loop itself).
    pub back_edges: Vec<Edge>,
    /// Nodes fed by the error output of a node.
    pub on_error_output: BTreeSet<usize>,
    /// Nodes that run only on n8n's error path: fed by an error output and nothing
    /// else, or fed only by such nodes.
    pub error_only: BTreeSet<usize>,
    /// Nodes fed from several branches (placed after them).
    pub joins: BTreeSet<usize>,
}

/// What a node's outputs mean for nesting.
pub fn branch_outputs(n: &Node) -> Branching {
    match n.short_kind() {
        "if" | "filter" => Branching::Branches(2),
        "switch" => Branching::Branches(switch_outputs(n)),
        "splitInBatches" if n.version >= 3.0 => Branching::Loop {
            body: 1,
            outputs: 2,
        },
        "splitInBatches" => Branching::Loop {
            body: 0,
            outputs: 1,
        },
        _ => Branching::Plain,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branching {
    Plain,
    Branches(usize),
    Loop { body: usize, outputs: usize },
}

impl Branching {
    fn outputs(self) -> usize {
        match self {
            Branching::Plain => 1,
            Branching::Branches(n) => n,
            Branching::Loop { outputs, .. } => outputs,
        }
    }
}

/// How many regular outputs a Switch node has.
pub fn switch_outputs(n: &Node) -> usize {
    let rules = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len)
    };
    let mode = n.str_param("mode").unwrap_or("rules");
    if mode == "expression" {
        let fixed = if n.version >= 3.0 { 2 } else { 4 };
        return n
            .param("numberOutputs")
            .and_then(serde_json::Value::as_u64)
            .map_or(fixed, |v| v as usize);
    }
    if n.version >= 3.0 {
        let r = n.param("rules").map_or(0, |r| rules(r, "values"));
        let extra = n
            .param("options")
            .and_then(|o| o.get("fallbackOutput"))
            .and_then(serde_json::Value::as_str)
            == Some("extra");
        r + usize::from(extra)
    } else {
        4
    }
}

pub fn is_sticky(n: &Node) -> bool {
    n.short_kind() == "stickyNote"
}

/// Plan the flattening of `w`.
pub fn plan(w: &Workflow) -> Plan {
    let count = w.nodes.len();
    let mut edges = bypass_disabled(w);
    // Error outputs (a node set to `continueErrorOutput` has one more output).
    let mut on_error_output = BTreeSet::new();
    edges.retain(|e| {
        let n = &w.nodes[e.from];
        let regular = branch_outputs(n).outputs();
        let errors = n.on_error.as_deref() == Some("continueErrorOutput");
        if errors && e.output >= regular {
            on_error_output.insert(e.to);
            false
        } else {
            true
        }
    });
    let key = |i: usize| {
        let n = &w.nodes[i];
        (ord(n.position.0), ord(n.position.1), n.name.clone())
    };
    let mut starts: Vec<usize> = (0..count)
        .filter(|&i| !edges.iter().any(|e| e.to == i))
        .collect();
    starts.sort_by_key(|&i| key(i));
    let back_edges = back_edges(count, &edges, &starts, &key);
    edges.retain(|e| !back_edges.contains(e));
    let order = topo(count, &edges, &key);
    let (ctx, joins) = contexts(w, &order, &edges);
    let error_only = error_only(count, &edges, &on_error_output);
    Plan {
        order,
        ctx,
        edges,
        back_edges,
        on_error_output,
        error_only,
        joins,
    }
}

/// The nodes reached only through error outputs (see [`Plan::error_only`]).
fn error_only(count: usize, edges: &[Edge], on_error_output: &BTreeSet<usize>) -> BTreeSet<usize> {
    let mut set: BTreeSet<usize> = on_error_output
        .iter()
        .copied()
        .filter(|&n| !edges.iter().any(|e| e.to == n))
        .collect();
    loop {
        let more: Vec<usize> = (0..count)
            .filter(|n| !set.contains(n))
            .filter(|&n| {
                let mut from = edges.iter().filter(|e| e.to == n).peekable();
                from.peek().is_some() && from.all(|e| set.contains(&e.from))
            })
            .collect();
        if more.is_empty() {
            return set;
        }
        set.extend(more);
    }
}

fn ord(f: f64) -> i64 {
    if f.is_finite() { f.round() as i64 } else { 0 }
}

/// Edges with every disabled node bypassed: its inputs feed its first output's targets.
fn bypass_disabled(w: &Workflow) -> Vec<Edge> {
    let mut edges = w.edges.clone();
    for (d, node) in w.nodes.iter().enumerate() {
        if !node.disabled {
            continue;
        }
        let ins: Vec<Edge> = edges.iter().filter(|e| e.to == d).cloned().collect();
        let outs: Vec<Edge> = edges
            .iter()
            .filter(|e| e.from == d && e.output == 0)
            .cloned()
            .collect();
        edges.retain(|e| e.to != d && e.from != d);
        for i in &ins {
            for o in &outs {
                if i.from != o.to {
                    edges.push(Edge {
                        from: i.from,
                        output: i.output,
                        to: o.to,
                        input: o.input,
                    });
                }
            }
        }
    }
    edges.sort_by_key(|e| (e.from, e.output, e.to, e.input));
    edges.dedup();
    edges
}

/// Edges closing a cycle, found by a depth-first walk from the start nodes in order.
fn back_edges<K: Ord>(
    count: usize,
    edges: &[Edge],
    starts: &[usize],
    key: &impl Fn(usize) -> K,
) -> Vec<Edge> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; count];
    let mut back = Vec::new();
    let mut roots: Vec<usize> = starts.to_vec();
    roots.extend((0..count).filter(|i| !starts.contains(i)));
    for root in roots {
        if mark[root] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge position).
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::Open;
        while let Some(&mut (n, ref mut next)) = stack.last_mut() {
            let mut outs: Vec<&Edge> = edges.iter().filter(|e| e.from == n).collect();
            outs.sort_by_key(|e| (e.output, key(e.to)));
            if let Some(e) = outs.get(*next) {
                *next += 1;
                match mark[e.to] {
                    Mark::New => {
                        mark[e.to] = Mark::Open;
                        stack.push((e.to, 0));
                    }
                    Mark::Open => back.push((*e).clone()),
                    Mark::Done => {}
                }
            } else {
                mark[n] = Mark::Done;
                stack.pop();
            }
        }
    }
    back
}

/// Kahn's algorithm, always taking the ready node that comes first on the canvas.
fn topo<K: Ord>(count: usize, edges: &[Edge], key: &impl Fn(usize) -> K) -> Vec<usize> {
    let mut indegree = vec![0usize; count];
    for e in edges {
        indegree[e.to] += 1;
    }
    let mut ready: Vec<usize> = (0..count).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(count);
    while !ready.is_empty() {
        ready.sort_by_key(|&i| std::cmp::Reverse(key(i)));
        let Some(n) = ready.pop() else { break };
        order.push(n);
        for e in edges.iter().filter(|e| e.from == n) {
            indegree[e.to] -= 1;
            if indegree[e.to] == 0 {
                ready.push(e.to);
            }
        }
    }
    // Acyclic after removing back edges; anything left is appended, never lost.
    let missing: Vec<usize> = (0..count).filter(|i| !order.contains(i)).collect();
    order.extend(missing);
    order
}

/// Each node's branch context, and the nodes placed after the branches that feed them.
fn contexts(w: &Workflow, order: &[usize], edges: &[Edge]) -> (Vec<Ctx>, BTreeSet<usize>) {
    let mut ctx: Vec<Ctx> = vec![Vec::new(); w.nodes.len()];
    let mut joins = BTreeSet::new();
    for &n in order {
        let mut from: Vec<Ctx> = Vec::new();
        for e in edges.iter().filter(|e| e.to == n) {
            let mut c = ctx[e.from].clone();
            match branch_outputs(&w.nodes[e.from]) {
                Branching::Branches(_) => c.push((e.from, e.output)),
                Branching::Loop { body, .. } if e.output == body => c.push((e.from, e.output)),
                _ => {}
            }
            from.push(c);
        }
        let Some(first) = from.first().cloned() else {
            continue;
        };
        let mut common = first;
        for c in &from[1..] {
            let same = common.iter().zip(c).take_while(|(a, b)| a == b).count();
            if same < common.len() || same < c.len() {
                joins.insert(n);
            }
            common.truncate(same);
        }
        ctx[n] = common;
    }
    (ctx, joins)
}
