//! merge-video: one pair of the merge tree, claimed once, then the walk up the tree. The walk is
//! shared with split-and-convert ([`climb`]): the task that completes a pair merges it itself,
//! and the pairs above it while it has time ([`Config::climb_seconds`](super::Config)), so a
//! merge costs neither a cold start nor two state transitions; only past that budget does it hand
//! the next merge to the state machine, which runs it as a merge-video task.

use super::{blocking, now, read_manifest, Services};
use crate::error::HandlerError;
use crate::events::{MergeTask, StepOutput};
use crate::job::{JobManifest, JobPaths};
use std::time::Instant;
use treemux_core::engine::{self, Produced};
use treemux_core::state::{ClaimOutcome, JobStore, JobUpdate, StateStore};
use treemux_core::steps::{after_node_finished, claimant_for, mark_merged, NextStep};
use treemux_core::tree::NodeId;

/// merge-video: produce `node` from its children (concatenation, or a rename when the right
/// child is a placeholder), mark it merged, and climb on as split-and-convert does.
pub async fn merge_video<S, O, X>(
    services: &Services<S, O, X>,
    task: MergeTask,
) -> Result<StepOutput, HandlerError>
where
    S: StateStore + JobStore,
{
    let job_id = task.job_id.clone();
    super::task(&services.store, &job_id, merge_video_body(services, task)).await
}

async fn merge_video_body<S, O, X>(
    services: &Services<S, O, X>,
    task: MergeTask,
) -> Result<StepOutput, HandlerError>
where
    S: StateStore + JobStore,
{
    let started = Instant::now();
    let manifest = read_manifest(&services.config, &task.job_id).await?;
    if !manifest.tree.contains(task.node) || task.node.level == 0 {
        return Err(HandlerError::invalid(format!(
            "job {}: {} is not a pair of this job",
            task.job_id, task.node
        )));
    }
    let next = merge_pair(services, &manifest, task.node, task.child).await?;
    let next = climb(services, &manifest, next, started).await?;
    Ok(StepOutput {
        job_id: task.job_id,
        next,
    })
}

/// Goes on up the tree from `next` (what finishing a node decided) while it says `Merge` and the
/// task, started at `started`, is within its climbing budget. Returns the step left for the
/// state machine: `Done`, `MergeAudio`, or `Merge` when the budget ran out.
pub(super) async fn climb<S, O, X>(
    services: &Services<S, O, X>,
    manifest: &JobManifest,
    mut next: NextStep,
    started: Instant,
) -> Result<NextStep, HandlerError>
where
    S: StateStore + JobStore,
{
    while let NextStep::Merge { node, child } = next {
        if started.elapsed().as_secs_f64() >= services.config.climb_seconds {
            tracing::info!(
                job_id = %manifest.job_id,
                node = %node,
                "climb: budget spent, the next merge is handed to merge-video"
            );
            break;
        }
        // As every task starts: a job that failed or was superseded meanwhile merges no more.
        super::ensure_active(&services.store, &manifest.job_id).await?;
        next = merge_pair(services, manifest, node, child).await?;
    }
    Ok(next)
}

/// Produces `node` under the claim held in `child`'s name, marks it merged and records it, and
/// returns what finishing `node` decides. A repeated call (a retried task) finds the merge done
/// and walks on; one line per index written, so a crash soak can prove no pair merged twice.
async fn merge_pair<S, O, X>(
    services: &Services<S, O, X>,
    manifest: &JobManifest,
    node: NodeId,
    child: NodeId,
) -> Result<NextStep, HandlerError>
where
    S: StateStore + JobStore,
{
    let started = Instant::now();
    let (job_id, tree) = (manifest.job_id.as_str(), manifest.tree);
    // A retried task may find its merge already done (and the children cleaned up): walk on.
    match services
        .store
        .claim_merge(job_id, node, &claimant_for(child))
        .await?
    {
        ClaimOutcome::Won => {}
        ClaimOutcome::AlreadyMerged => {
            return Ok(after_node_finished(&services.store, job_id, &tree, node).await?);
        }
        ClaimOutcome::Lost { holder } => {
            return Err(HandlerError::invalid(format!(
                "job {job_id}: {node} is claimed by {holder}, not by {child}"
            )));
        }
    }
    let layout = JobPaths::new(&services.config.scratch_root, job_id).layout_of(manifest);
    // The claim is this task's, so an index at the node was recorded by an earlier attempt of
    // this same task that died before marking the pair: the merge is done already.
    let crashes = services.config.crashes.clone();
    let produced = blocking(move || {
        engine::produce_pair(&tree, &layout, node, &crashes).map_err(HandlerError::from)
    })
    .await?;
    let ran = matches!(produced, Produced::Made(_));
    if ran {
        tracing::info!(
            job_id = %job_id,
            node = %node,
            kind = ?tree.merge_kind(node),
            "merge: merge file written"
        );
    }
    let update = JobUpdate::Merged {
        node,
        seconds: started.elapsed().as_secs_f64(),
        ran,
    };
    services.store.update_job(job_id, &update, now()).await?;
    super::announce::progress(services, job_id).await;
    // Nothing is deleted: the segments are what the root reads, and the job's scratch goes
    // when the job ends (as in the local runner).
    mark_merged(&services.store, job_id, node, child).await?;
    let next = after_node_finished(&services.store, job_id, &tree, node).await?;
    tracing::info!(
        job_id = %job_id,
        node = %node,
        outcome = if ran { "merged" } else { "found-merged" },
        next = ?next,
        "merge"
    );
    Ok(next)
}
