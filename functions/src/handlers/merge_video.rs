//! merge-video: one pair of the merge tree, claimed once, then the walk up the tree.

use super::{blocking, now, read_manifest, Services};
use crate::error::HandlerError;
use crate::events::{MergeTask, StepOutput};
use crate::job::JobPaths;
use std::time::Instant;
use treemux_core::engine::{self, Produced};
use treemux_core::state::{ClaimOutcome, JobStore, JobUpdate, StateStore};
use treemux_core::steps::{after_node_finished, claimant_for, mark_merged};

/// merge-video: produce `node` from its children (concatenation, or a rename when the right
/// child is a placeholder), mark it merged, and decide what comes next.
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
    let tree = manifest.tree;
    if !tree.contains(task.node) || task.node.level == 0 {
        return Err(HandlerError::invalid(format!(
            "job {}: {} is not a pair of this job",
            task.job_id, task.node
        )));
    }
    // A retried task may find its merge already done (and the children cleaned up): walk on.
    match services
        .store
        .claim_merge(&task.job_id, task.node, &claimant_for(task.child))
        .await?
    {
        ClaimOutcome::Won => {}
        ClaimOutcome::AlreadyMerged => {
            let next = after_node_finished(&services.store, &task.job_id, &tree, task.node).await?;
            return Ok(StepOutput {
                job_id: task.job_id,
                next,
            });
        }
        ClaimOutcome::Lost { holder } => {
            return Err(HandlerError::invalid(format!(
                "job {}: {} is claimed by {holder}, not by {}",
                task.job_id, task.node, task.child
            )));
        }
    }
    let layout = JobPaths::new(&services.config.scratch_root, &task.job_id).layout_of(&manifest);
    // The claim is this task's, so an index at the node was recorded by an earlier attempt of
    // this same task that died before marking the pair: the merge is done already.
    let (node, crashes) = (task.node, services.config.crashes.clone());
    let produced = blocking(move || {
        engine::produce_pair(&tree, &layout, node, &crashes).map_err(HandlerError::from)
    })
    .await?;
    let ran = matches!(produced, Produced::Made(_));
    if ran {
        // One line per index written: a crash soak counts them to prove no pair is merged
        // twice, even when a run died before recording it.
        tracing::info!(
            job_id = %task.job_id,
            node = %task.node,
            kind = ?tree.merge_kind(task.node),
            "merge-video: merge file written"
        );
    }
    let update = JobUpdate::Merged {
        node: task.node,
        seconds: started.elapsed().as_secs_f64(),
        ran,
    };
    services
        .store
        .update_job(&task.job_id, &update, now())
        .await?;
    super::announce::progress(services, &task.job_id).await;
    // Nothing is deleted: the segments are what the root reads, and the job's scratch goes
    // when the job ends (as in the local runner).
    mark_merged(&services.store, &task.job_id, task.node, task.child).await?;
    let next = after_node_finished(&services.store, &task.job_id, &tree, task.node).await?;
    tracing::info!(
        job_id = %task.job_id,
        node = %task.node,
        outcome = if ran { "merged" } else { "found-merged" },
        next = ?next,
        "merge-video"
    );
    Ok(StepOutput {
        job_id: task.job_id,
        next,
    })
}
