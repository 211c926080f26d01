//! What happens after a node of the merge tree is finished: the one decision shared by the local
//! runner and the Lambda handlers (split-and-convert and merge-video return exactly this).

use crate::state::{ClaimOutcome, StateError, StateStore};
use crate::tree::{MergeTree, NodeId};
use serde::{Deserialize, Serialize};

/// The next step for the task that just finished a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "next")]
pub enum NextStep {
    /// This task must produce `node` by merging its two children. The claim is held in the name
    /// of `child` (the finished child whose confirmation completed the pair), which is what
    /// [`mark_merged`] needs afterwards.
    Merge { node: NodeId, child: NodeId },
    /// Nothing for this task: a sibling is unfinished, or another task merges the pair.
    Done,
    /// The root is finished: mux the audio back in.
    MergeAudio,
}

/// The claimant name of the task that finished `node`. A retried task finishes the same node, so
/// it gets the same name and may take its claim again.
pub fn claimant_for(node: NodeId) -> String {
    format!("finished:{node}")
}

/// Records that `node` is finished and decides what its task does next.
///
/// Idempotent: calling it again for the same node (a retried or duplicated task) returns `Merge`
/// only while the merge is claimed by this node's task and not yet marked done; once done it
/// walks on upwards, so a crash between a merge and its confirmation heals on retry.
pub async fn after_node_finished<S: StateStore>(
    store: &S,
    job: &str,
    tree: &MergeTree,
    finished: NodeId,
) -> Result<NextStep, StateError> {
    let mut node = finished;
    loop {
        let Some((parent, side)) = tree.parent(node) else {
            return Ok(NextStep::MergeAudio);
        };
        let confirmed = store.confirm_child(job, parent, side).await?;
        if confirmed.len() < 2 {
            return Ok(NextStep::Done);
        }
        match store.claim_merge(job, parent, &claimant_for(node)).await? {
            ClaimOutcome::Won => {
                return Ok(NextStep::Merge {
                    node: parent,
                    child: node,
                })
            }
            ClaimOutcome::Lost { .. } => return Ok(NextStep::Done),
            ClaimOutcome::AlreadyMerged => node = parent,
        }
    }
}

/// Marks `merged` done after its file is in place; `child` is the one named in the
/// [`NextStep::Merge`] that asked for the merge.
pub async fn mark_merged<S: StateStore>(
    store: &S,
    job: &str,
    merged: NodeId,
    child: NodeId,
) -> Result<(), StateError> {
    store.mark_merged(job, merged, &claimant_for(child)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::InMemoryStateStore;
    use crate::tree::MergeKind;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Drives a whole job through `after_node_finished` with leaves finishing in `order`; every
    /// task in `repeats` runs twice (a retry or duplicate delivery), possibly after later work.
    /// Returns how often each internal node was produced by a merge or rename.
    fn simulate(
        real: u32,
        order: &[u32],
        repeats: &[bool],
    ) -> (MergeTree, HashMap<NodeId, u32>, u32) {
        let tree = MergeTree::new(real);
        let store = InMemoryStateStore::new();
        pollster::block_on(store.create_pairs("job", &tree)).expect("create");
        let mut merges: HashMap<NodeId, u32> = HashMap::new();
        let mut roots = 0;
        // A queue of finished nodes whose task still has to take its next step.
        let mut pending: Vec<NodeId> = order.iter().map(|&leaf| NodeId::leaf(leaf)).collect();
        let mut deferred_repeats = Vec::new();
        let mut step = 0;
        while let Some(node) = pending.pop().or_else(|| deferred_repeats.pop()) {
            let repeat = repeats
                .get(step % repeats.len().max(1))
                .copied()
                .unwrap_or(false);
            step += 1;
            let runs = if repeat { 2 } else { 1 };
            for _ in 0..runs {
                match pollster::block_on(after_node_finished(&store, "job", &tree, node))
                    .expect("step")
                {
                    NextStep::Merge {
                        node: merged,
                        child,
                    } => {
                        assert_ne!(
                            tree.merge_kind(merged),
                            MergeKind::Placeholder,
                            "placeholders are never merged"
                        );
                        *merges.entry(merged).or_default() += 1;
                        pollster::block_on(mark_merged(&store, "job", merged, child))
                            .expect("mark");
                        if repeat {
                            deferred_repeats.push(node);
                        }
                        pending.push(merged);
                    }
                    NextStep::MergeAudio => roots += 1,
                    NextStep::Done => {}
                }
            }
        }
        (tree, merges, roots)
    }

    proptest! {
        #[test]
        fn any_completion_order_merges_every_pair_exactly_once(
            (real, order) in (1u32..70).prop_flat_map(|real| (Just(real), Just((0..real).collect::<Vec<_>>()).prop_shuffle())),
            repeats in prop::collection::vec(any::<bool>(), 1..16),
        ) {
            let (tree, merges, roots) = simulate(real, &order, &repeats);
            let placeholder_pairs = tree.internal_nodes().filter(|&n| tree.merge_kind(n) == MergeKind::Placeholder).count() as u32;
            let merged: u32 = merges.values().sum();
            prop_assert_eq!(merged + placeholder_pairs, tree.leaf_count() - 1, "2^n − 1 pairs completed");
            prop_assert!(merges.values().all(|&count| count == 1), "a pair merged twice: {:?}", merges);
            prop_assert_eq!(merges.len() as u32, tree.merges_needed());
            if tree.levels > 0 {
                prop_assert_eq!(merges.get(&tree.root()).copied(), Some(1), "the root merges once");
            }
            prop_assert!(roots >= 1, "the root finished");
        }
    }

    #[test]
    fn a_retry_after_the_merge_walks_on_instead_of_merging_again() {
        let tree = MergeTree::new(2);
        let store = InMemoryStateStore::new();
        pollster::block_on(async {
            store.create_pairs("j", &tree).await.expect("create");
            assert_eq!(
                after_node_finished(&store, "j", &tree, NodeId::leaf(0))
                    .await
                    .expect("step"),
                NextStep::Done
            );
            let right = NodeId::leaf(1);
            assert_eq!(
                after_node_finished(&store, "j", &tree, right)
                    .await
                    .expect("step"),
                NextStep::Merge {
                    node: tree.root(),
                    child: right
                }
            );
            // Crash before marking: the same task retried wins again and redoes the merge.
            assert_eq!(
                after_node_finished(&store, "j", &tree, right)
                    .await
                    .expect("step"),
                NextStep::Merge {
                    node: tree.root(),
                    child: right
                }
            );
            // The other child, retried, loses the claim.
            assert_eq!(
                after_node_finished(&store, "j", &tree, NodeId::leaf(0))
                    .await
                    .expect("step"),
                NextStep::Done
            );
            mark_merged(&store, "j", tree.root(), right)
                .await
                .expect("mark");
            assert_eq!(
                after_node_finished(&store, "j", &tree, right)
                    .await
                    .expect("step"),
                NextStep::MergeAudio
            );
            assert!(
                mark_merged(&store, "j", tree.root(), NodeId::leaf(0))
                    .await
                    .is_err(),
                "only the holder marks"
            );
        });
    }
}
