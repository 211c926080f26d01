//! The merge tree: pure arithmetic over node ids.
//!
//! Leaves (level 0) are the segments; node `(level, j)` for `level ≥ 1` is the concatenation of
//! its children `(level − 1, 2j)` (left) and `(level − 1, 2j + 1)` (right). A tree over `S` real
//! segments has `2^n` leaves with `n = ⌈log2 S⌉`; leaves `S..2^n` are **placeholders**: never
//! encoded, counted as finished from the start. Because placeholders are always the rightmost
//! leaves, a node is one of three kinds ([`MergeKind`]): both children real (concatenate), only
//! the left child real (the merge is a rename), or no real leaf below it (a placeholder itself).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node of the merge tree. Level 0 holds segments; the root is at level `levels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    pub level: u32,
    pub index: u32,
}

impl NodeId {
    /// The leaf of segment `index`.
    pub fn leaf(index: u32) -> Self {
        Self { level: 0, index }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}-{}", self.level, self.index)
    }
}

/// Which child of its parent a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Side {
    Left,
    Right,
}

/// What finishing an internal node takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MergeKind {
    /// Both children hold real frames: concatenate left then right.
    Concat,
    /// The right child is a placeholder: the node is the left child, renamed.
    Rename,
    /// No real segment below: done from the start, nothing to do.
    Placeholder,
}

/// The shape of a job's merge tree.
///
/// ```
/// use treemux_core::tree::{MergeKind, MergeTree, NodeId, Side};
///
/// let tree = MergeTree::new(3); // three segments: four leaves, the last a placeholder
/// assert_eq!((tree.levels, tree.leaf_count()), (2, 4));
/// assert_eq!(tree.parent(NodeId::leaf(2)), Some((NodeId { level: 1, index: 1 }, Side::Left)));
/// assert_eq!(tree.merge_kind(NodeId { level: 1, index: 1 }), MergeKind::Rename);
/// assert_eq!(tree.merge_kind(tree.root()), MergeKind::Concat);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeTree {
    /// Height of the tree: `2^levels` leaves.
    pub levels: u32,
    /// Real segments, at leaves `0..real_leaves`.
    pub real_leaves: u32,
}

/// The deepest tree supported: 2^20 segments, far beyond any real plan.
pub const MAX_LEVELS: u32 = 20;

impl MergeTree {
    /// The smallest tree holding `real_leaves` segments. Precondition: `1 ≤ real_leaves ≤ 2^20`.
    pub fn new(real_leaves: u32) -> Self {
        assert!(
            (1..=1 << MAX_LEVELS).contains(&real_leaves),
            "a merge tree holds 1..=2^20 segments, got {real_leaves}"
        );
        Self {
            levels: real_leaves.next_power_of_two().trailing_zeros(),
            real_leaves,
        }
    }

    /// Leaves including placeholders: `2^levels`.
    pub fn leaf_count(&self) -> u32 {
        1 << self.levels
    }

    /// Pair merges the tree needs: its internal nodes that are not placeholders (concatenations
    /// and renames).
    pub fn merges_needed(&self) -> u32 {
        self.internal_nodes()
            .filter(|&node| self.merge_kind(node) != MergeKind::Placeholder)
            .count() as u32
    }

    /// The node covering the whole video.
    pub fn root(&self) -> NodeId {
        NodeId {
            level: self.levels,
            index: 0,
        }
    }

    /// True when `node` is inside this tree.
    pub fn contains(&self, node: NodeId) -> bool {
        node.level <= self.levels && node.index < (1 << (self.levels - node.level))
    }

    /// The node's parent and which child of it the node is; `None` for the root.
    pub fn parent(&self, node: NodeId) -> Option<(NodeId, Side)> {
        debug_assert!(self.contains(node), "{node} is outside the tree");
        (node.level < self.levels).then(|| {
            let side = if node.index % 2 == 0 {
                Side::Left
            } else {
                Side::Right
            };
            (
                NodeId {
                    level: node.level + 1,
                    index: node.index / 2,
                },
                side,
            )
        })
    }

    /// The two children of an internal node; `None` for a leaf.
    pub fn children(&self, node: NodeId) -> Option<(NodeId, NodeId)> {
        (node.level > 0).then(|| {
            let level = node.level - 1;
            (
                NodeId {
                    level,
                    index: node.index * 2,
                },
                NodeId {
                    level,
                    index: node.index * 2 + 1,
                },
            )
        })
    }

    /// True when no real segment lies below `node`.
    pub fn is_placeholder(&self, node: NodeId) -> bool {
        (u64::from(node.index) << node.level) >= u64::from(self.real_leaves)
    }

    /// What finishing internal node `node` takes. Precondition: `node.level ≥ 1`.
    pub fn merge_kind(&self, node: NodeId) -> MergeKind {
        let (_, right) = self
            .children(node)
            .expect("merge_kind is asked of internal nodes only");
        if self.is_placeholder(node) {
            MergeKind::Placeholder
        } else if self.is_placeholder(right) {
            MergeKind::Rename
        } else {
            MergeKind::Concat
        }
    }

    /// Every internal node, bottom level first: `2^levels − 1` of them.
    pub fn internal_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        (1..=self.levels).flat_map(move |level| {
            (0..1u32 << (self.levels - level)).map(move |index| NodeId { level, index })
        })
    }

    /// Confirmations that hold before any work starts: a placeholder child confirms itself to a
    /// real parent, as if already finished. Placeholder parents are left out: nobody ever reads
    /// their records. At most one confirmation per level.
    pub fn initial_confirmations(&self) -> Vec<(NodeId, Side)> {
        (0..=self.levels)
            .flat_map(|level| {
                (0..1u32 << (self.levels - level)).map(move |index| NodeId { level, index })
            })
            .filter(|&node| self.is_placeholder(node))
            .filter_map(|node| self.parent(node))
            .filter(|&(parent, _)| !self.is_placeholder(parent))
            .collect()
    }
}

impl MergeTree {
    /// The tree as text, root first, one line per node, drawn with box characters as `tree(1)`
    /// does: internal nodes say what finishing them takes (`concat`, `rename`), each real leaf
    /// gets `leaf_label(index)` after its id, and a subtree with no real segment is one
    /// `placeholder` line. Lines are at most `4 × levels` characters wider than the labels.
    pub fn outline(&self, leaf_label: impl Fn(u32) -> String) -> Vec<String> {
        let mut lines = Vec::new();
        self.outline_node(self.root(), "", "", &leaf_label, &mut lines);
        lines
    }

    fn outline_node(
        &self,
        node: NodeId,
        first_prefix: &str,
        rest_prefix: &str,
        leaf_label: &impl Fn(u32) -> String,
        lines: &mut Vec<String>,
    ) {
        if self.is_placeholder(node) {
            let first = u64::from(node.index) << node.level;
            let last = first + (1u64 << node.level) - 1;
            let span = if first == last {
                format!("leaf {first}")
            } else {
                format!("leaves {first}..={last}")
            };
            lines.push(format!(
                "{first_prefix}{node} placeholder ({span}, done from the start)"
            ));
            return;
        }
        let Some((left, right)) = self.children(node) else {
            lines.push(format!("{first_prefix}{node} {}", leaf_label(node.index)));
            return;
        };
        let kind = match self.merge_kind(node) {
            MergeKind::Concat => "concat",
            MergeKind::Rename => "rename (right side is a placeholder)",
            MergeKind::Placeholder => unreachable!("placeholders are handled above"),
        };
        lines.push(format!("{first_prefix}{node} {kind}"));
        self.outline_node(
            left,
            &format!("{rest_prefix}├── "),
            &format!("{rest_prefix}│   "),
            leaf_label,
            lines,
        );
        self.outline_node(
            right,
            &format!("{rest_prefix}└── "),
            &format!("{rest_prefix}    "),
            leaf_label,
            lines,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shapes_of_small_trees() {
        let one = MergeTree::new(1);
        assert_eq!(
            (one.levels, one.leaf_count(), one.root()),
            (0, 1, NodeId::leaf(0))
        );
        assert_eq!(one.internal_nodes().count(), 0);
        assert!(one.parent(NodeId::leaf(0)).is_none());

        let five = MergeTree::new(5);
        assert_eq!((five.levels, five.leaf_count()), (3, 8));
        assert_eq!(
            five.merge_kind(NodeId { level: 1, index: 2 }),
            MergeKind::Rename
        );
        assert_eq!(
            five.merge_kind(NodeId { level: 1, index: 3 }),
            MergeKind::Placeholder
        );
        assert_eq!(
            five.merge_kind(NodeId { level: 2, index: 1 }),
            MergeKind::Rename
        );
        assert_eq!(five.merge_kind(five.root()), MergeKind::Concat);
        assert_eq!(
            five.parent(NodeId::leaf(5)),
            Some((NodeId { level: 1, index: 2 }, Side::Right))
        );
    }

    #[test]
    fn outline_of_three_segments() {
        let lines = MergeTree::new(3).outline(|index| format!("segment {index}"));
        assert_eq!(
            lines,
            [
                "L2-0 concat",
                "├── L1-0 concat",
                "│   ├── L0-0 segment 0",
                "│   └── L0-1 segment 1",
                "└── L1-1 rename (right side is a placeholder)",
                "    ├── L0-2 segment 2",
                "    └── L0-3 placeholder (leaf 3, done from the start)",
            ]
        );
        assert_eq!(
            MergeTree::new(5)
                .outline(|_| String::new())
                .last()
                .map(String::as_str),
            Some("    └── L1-3 placeholder (leaves 6..=7, done from the start)")
        );
    }

    proptest! {
        /// Every real segment appears once, in order, and every line but the root hangs off a
        /// branch.
        #[test]
        fn outline_lists_each_segment_once_in_order(real in 1u32..200) {
            let tree = MergeTree::new(real);
            let lines = tree.outline(|index| format!("<{index}>"));
            let labelled: Vec<u32> = lines
                .iter()
                .filter_map(|line| line.split('<').nth(1))
                .map(|rest| rest.trim_end_matches('>').parse().expect("a leaf label holds its index"))
                .collect();
            prop_assert_eq!(labelled, (0..real).collect::<Vec<_>>());
            prop_assert!(lines[1..].iter().all(|line| line.contains("── ")));
        }

        #[test]
        fn tree_invariants(real in 1u32..2000) {
            let tree = MergeTree::new(real);
            prop_assert!(tree.leaf_count() >= real && tree.leaf_count() < real.max(1) * 2);
            prop_assert_eq!(tree.internal_nodes().count() as u32, tree.leaf_count() - 1);
            prop_assert!(!tree.is_placeholder(tree.root()));
            for leaf in 0..tree.leaf_count() {
                prop_assert_eq!(tree.is_placeholder(NodeId::leaf(leaf)), leaf >= real);
                // Walking up from any leaf reaches the root in `levels` steps.
                let mut node = NodeId::leaf(leaf);
                let mut steps = 0;
                while let Some((parent, side)) = tree.parent(node) {
                    let (left, right) = tree.children(parent).expect("internal");
                    prop_assert_eq!(if side == Side::Left { left } else { right }, node);
                    node = parent;
                    steps += 1;
                }
                prop_assert_eq!((node, steps), (tree.root(), tree.levels));
            }
            // Initial confirmations are exactly the placeholder children of real pairs.
            let initial = tree.initial_confirmations();
            prop_assert!(initial.len() as u32 <= tree.levels, "at most one per level");
            for node in tree.internal_nodes() {
                let (left, right) = tree.children(node).expect("internal");
                let real = !tree.is_placeholder(node);
                prop_assert_eq!(initial.contains(&(node, Side::Left)), real && tree.is_placeholder(left));
                prop_assert_eq!(initial.contains(&(node, Side::Right)), real && tree.is_placeholder(right));
            }
        }
    }
}
