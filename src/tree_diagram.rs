//! **Pure.** A run's merge tree as a picture: segments at the bottom, pairs above them, the root
//! at the top; placeholders (the padding to 2^n leaves) dashed; every merge numbered in the order
//! it finished, with its time and worker, from the run's own timeline (the `timeline` of
//! `treemux transcode --json`, the same spans the timeline chart draws).
//!
//! Drawn with `plotters`' SVG backend into a string.

use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use treemux_core::local::TaskSpan;
use treemux_core::names::TaskKind;
use treemux_core::tree::{MergeKind, MergeTree, NodeId};

/// The largest tree drawn: beyond this the boxes would be too small to read.
pub const MAX_LEAVES: u32 = 128;

/// Geometry, in SVG user units (pixels).
const LEAF_WIDTH: i32 = 104;
const BOX_WIDTH: i32 = 94;
const BOX_HEIGHT: i32 = 50;
const ROW: i32 = 92;
const TOP: i32 = 64;
const SIDE: i32 = 20;
const FOOT: i32 = 70;

const SEGMENT: RGBColor = RGBColor(0x4e, 0x79, 0xa7);
const MERGE: RGBColor = RGBColor(0xf2, 0x8e, 0x2b);
const RENAME: RGBColor = RGBColor(0xba, 0xb0, 0xac);
const PLACEHOLDER: RGBColor = RGBColor(0x99, 0x99, 0x99);
const EDGE: RGBColor = RGBColor(0x66, 0x66, 0x66);

/// Why the diagram could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum DiagramError {
    #[error("a tree of {0} leaves is too large to draw (at most {MAX_LEAVES})")]
    TooLarge(u32),
    #[error("cannot draw the merge tree: {0}")]
    Draw(String),
}

fn draw_error<E: std::fmt::Debug>(error: E) -> DiagramError {
    DiagramError::Draw(format!("{error:?}"))
}

/// What happened to one node of the tree in the run.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeEvent {
    pub node: NodeId,
    pub kind: NodeKind,
    /// The task that made it: start and end (seconds since the run started) and its worker;
    /// `None` for placeholders and for nodes a `--resume` run reused.
    pub task: Option<(f64, f64, usize)>,
    /// For merges and renames: 1 for the first to finish, 2 for the next, …
    pub order: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Segment,
    Merge,
    Rename,
    Placeholder,
}

/// The node a span made: segments are named by their index, merges by `L<level>-<index>`.
fn span_node(span: &TaskSpan) -> Option<NodeId> {
    match span.kind {
        TaskKind::Segment => span.target.parse().ok().map(NodeId::leaf),
        TaskKind::Merge | TaskKind::Rename => {
            let (level, index) = span.target.strip_prefix('L')?.split_once('-')?;
            Some(NodeId {
                level: level.parse().ok()?,
                index: index.parse().ok()?,
            })
        }
        TaskKind::Audio => None,
    }
}

/// Every node of `tree` with what the run's `spans` say about it: the task that made it and,
/// for merges, the order in which they finished (by end time; ties by node id).
pub fn node_events(tree: &MergeTree, spans: &[TaskSpan]) -> Vec<NodeEvent> {
    let task_of = |node: NodeId| {
        spans
            .iter()
            .filter(|span| span_node(span) == Some(node))
            // A retried task appears twice; the last one made the node.
            .max_by(|a, b| a.end_seconds.total_cmp(&b.end_seconds))
            .map(|span| (span.start_seconds, span.end_seconds, span.worker))
    };
    let mut events: Vec<NodeEvent> = (0..=tree.levels)
        .flat_map(|level| {
            (0..1u32 << (tree.levels - level)).map(move |index| NodeId { level, index })
        })
        .map(|node| {
            let kind = if node.level == 0 {
                if tree.is_placeholder(node) {
                    NodeKind::Placeholder
                } else {
                    NodeKind::Segment
                }
            } else {
                match tree.merge_kind(node) {
                    MergeKind::Concat => NodeKind::Merge,
                    MergeKind::Rename => NodeKind::Rename,
                    MergeKind::Placeholder => NodeKind::Placeholder,
                }
            };
            let task = (kind != NodeKind::Placeholder)
                .then(|| task_of(node))
                .flatten();
            NodeEvent {
                node,
                kind,
                task,
                order: None,
            }
        })
        .collect();
    let mut merges: Vec<(f64, NodeId)> = events
        .iter()
        .filter(|e| matches!(e.kind, NodeKind::Merge | NodeKind::Rename))
        .filter_map(|e| e.task.map(|(_, end, _)| (end, e.node)))
        .collect();
    merges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (rank, (_, node)) in merges.iter().enumerate() {
        if let Some(event) = events.iter_mut().find(|e| e.node == *node) {
            event.order = Some(rank + 1);
        }
    }
    events
}

/// Centre of a node's box: x from the middle of the leaves below it, y from its level.
fn centre(tree: &MergeTree, node: NodeId) -> (i32, i32) {
    let span = 1i32 << node.level;
    let first_leaf = node.index as i32 * span;
    let x = SIDE + first_leaf * LEAF_WIDTH + span * LEAF_WIDTH / 2;
    let y = TOP + (tree.levels - node.level) as i32 * ROW + BOX_HEIGHT / 2;
    (x, y)
}

/// Renders `tree` and what `spans` say of it as an SVG document headed by `title`.
/// `spans` are the run's timeline (seconds since it started).
pub fn render_svg(
    title: &str,
    tree: &MergeTree,
    spans: &[TaskSpan],
) -> Result<String, DiagramError> {
    if tree.leaf_count() > MAX_LEAVES {
        return Err(DiagramError::TooLarge(tree.leaf_count()));
    }
    let events = node_events(tree, spans);
    let width = (2 * SIDE + tree.leaf_count() as i32 * LEAF_WIDTH).max(1020);
    let height = TOP + tree.levels as i32 * ROW + BOX_HEIGHT + FOOT;
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        root.draw(&Text::new(title.to_owned(), (SIDE, 14), ("sans-serif", 15)))
            .map_err(draw_error)?;
        let merges = events.iter().filter(|e| e.order.is_some()).count();
        root.draw(&Text::new(
            format!(
                "{} segments padded to {} leaves ({} placeholders, dashed); {merges} merges, numbered #1… in the order they finished",
                tree.real_leaves,
                tree.leaf_count(),
                tree.leaf_count() - tree.real_leaves
            ),
            (SIDE, 36),
            ("sans-serif", 12),
        ))
        .map_err(draw_error)?;

        // Edges first, so the boxes sit on top of them.
        for event in events.iter().filter(|e| e.node.level > 0) {
            let (px, py) = centre(tree, event.node);
            for child in [2 * event.node.index, 2 * event.node.index + 1] {
                let child = NodeId {
                    level: event.node.level - 1,
                    index: child,
                };
                let (cx, cy) = centre(tree, child);
                let points = vec![(px, py + BOX_HEIGHT / 2), (cx, cy - BOX_HEIGHT / 2)];
                if tree.is_placeholder(child) {
                    root.draw(&DashedPathElement::new(
                        points,
                        4,
                        3,
                        PLACEHOLDER.stroke_width(1),
                    ))
                    .map_err(draw_error)?;
                } else {
                    root.draw(&PathElement::new(points, EDGE.stroke_width(1)))
                        .map_err(draw_error)?;
                }
            }
        }
        for event in &events {
            draw_node(&root, tree, event)?;
        }

        let legend_y = height - FOOT + 24;
        let legend = [
            (SEGMENT, "segment: encoded (start–end s, worker)"),
            (MERGE, "merge: two neighbours joined"),
            (RENAME, "rename: right side is a placeholder"),
        ];
        for (index, (colour, text)) in legend.iter().enumerate() {
            let x = SIDE + index as i32 * 250;
            root.draw(&Rectangle::new(
                [(x, legend_y - 6), (x + 12, legend_y + 6)],
                colour.filled(),
            ))
            .map_err(draw_error)?;
            root.draw(&Text::new(
                (*text).to_owned(),
                (x + 18, legend_y - 6),
                ("sans-serif", 12),
            ))
            .map_err(draw_error)?;
        }
        let x = SIDE + 3 * 250;
        root.draw(&DashedPathElement::new(
            vec![
                (x, legend_y - 6),
                (x + 12, legend_y - 6),
                (x + 12, legend_y + 6),
                (x, legend_y + 6),
                (x, legend_y - 6),
            ],
            3,
            2,
            PLACEHOLDER.stroke_width(1),
        ))
        .map_err(draw_error)?;
        root.draw(&Text::new(
            "placeholder: padding, never encoded".to_owned(),
            (x + 18, legend_y - 6),
            ("sans-serif", 12),
        ))
        .map_err(draw_error)?;
        root.draw(&Text::new(
            "#k at T s on wK: the k-th merge to finish, at T seconds since the run started, on worker K; a merge starts as soon as both children exist".to_owned(),
            (SIDE, legend_y + 16),
            ("sans-serif", 11),
        ))
        .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_node(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    tree: &MergeTree,
    event: &NodeEvent,
) -> Result<(), DiagramError> {
    let (x, y) = centre(tree, event.node);
    let (x0, y0, x1, y1) = (
        x - BOX_WIDTH / 2,
        y - BOX_HEIGHT / 2,
        x + BOX_WIDTH / 2,
        y + BOX_HEIGHT / 2,
    );
    let (fill, text_colour) = match event.kind {
        NodeKind::Segment => (Some(SEGMENT), WHITE),
        NodeKind::Merge => (Some(MERGE), BLACK),
        NodeKind::Rename => (Some(RENAME), BLACK),
        NodeKind::Placeholder => (None, PLACEHOLDER),
    };
    match fill {
        Some(colour) => root
            .draw(&Rectangle::new([(x0, y0), (x1, y1)], colour.filled()))
            .map_err(draw_error)?,
        None => root
            .draw(&DashedPathElement::new(
                vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)],
                4,
                3,
                PLACEHOLDER.stroke_width(1),
            ))
            .map_err(draw_error)?,
    }
    let name = match event.kind {
        NodeKind::Segment => format!("seg {}", event.node.index),
        _ if event.node.level == tree.levels => format!("{} root", event.node),
        _ => event.node.to_string(),
    };
    let detail = match (event.kind, event.task, event.order) {
        (NodeKind::Placeholder, _, _) => vec!["placeholder".to_owned()],
        (NodeKind::Segment, Some((start, end, worker)), _) => {
            vec![format!("{start:.2}–{end:.2} s"), format!("worker {worker}")]
        }
        (_, Some((_, end, worker)), Some(order)) => {
            let kind = if event.kind == NodeKind::Rename {
                "rename"
            } else {
                "merge"
            };
            vec![
                format!("#{order} {kind}"),
                format!("at {end:.2} s on w{worker}"),
            ]
        }
        _ => vec!["reused or not recorded".to_owned()],
    };
    let style = TextStyle::from(("sans-serif", 11).into_font())
        .color(&text_colour)
        .pos(Pos::new(HPos::Center, VPos::Top));
    let bold = TextStyle::from(("sans-serif", 12).into_font())
        .color(&text_colour)
        .pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(name, (x, y0 + 4), bold))
        .map_err(draw_error)?;
    for (line, text) in detail.into_iter().enumerate() {
        root.draw(&Text::new(
            text,
            (x, y0 + 19 + 14 * line as i32),
            style.clone(),
        ))
        .map_err(draw_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn span(kind: TaskKind, target: &str, worker: usize, start: f64, end: f64) -> TaskSpan {
        TaskSpan {
            kind,
            target: target.to_owned(),
            worker,
            start_seconds: start,
            end_seconds: end,
        }
    }

    /// Three segments: leaf 3 is a placeholder, L1-1 a rename, the root a merge.
    fn three_segment_run() -> (MergeTree, Vec<TaskSpan>) {
        let spans = vec![
            span(TaskKind::Segment, "0", 0, 0.0, 2.0),
            span(TaskKind::Segment, "1", 1, 0.0, 2.5),
            span(TaskKind::Segment, "2", 0, 2.0, 3.0),
            span(TaskKind::Rename, "L1-1", 0, 3.0, 3.01),
            span(TaskKind::Merge, "L1-0", 1, 2.5, 2.6),
            span(TaskKind::Merge, "L2-0", 0, 3.01, 3.1),
            span(TaskKind::Audio, "audio", 1, 2.6, 2.9),
        ];
        (MergeTree::new(3), spans)
    }

    #[test]
    fn merges_are_numbered_in_the_order_they_finished() {
        let (tree, spans) = three_segment_run();
        let events = node_events(&tree, &spans);
        let order = |level, index| {
            events
                .iter()
                .find(|e| e.node == NodeId { level, index })
                .and_then(|e| e.order)
        };
        assert_eq!(order(1, 0), Some(1), "L1-0 finished first, at 2.6 s");
        assert_eq!(order(1, 1), Some(2));
        assert_eq!(order(2, 0), Some(3), "the root last");
        assert_eq!(order(0, 0), None, "segments are not merges");
        let placeholder = events
            .iter()
            .find(|e| e.node == NodeId::leaf(3))
            .expect("leaf 3");
        assert_eq!(placeholder.kind, NodeKind::Placeholder);
        assert_eq!(placeholder.task, None);
        let segment = events
            .iter()
            .find(|e| e.node == NodeId::leaf(1))
            .expect("leaf 1");
        assert_eq!(segment.task, Some((0.0, 2.5, 1)));
        assert_eq!(events.len(), 4 + 2 + 1, "every node of the tree");
    }

    #[test]
    fn the_diagram_draws_every_node_edge_and_placeholder() {
        let (tree, spans) = three_segment_run();
        let svg = render_svg("run <3>", &tree, &spans).expect("drawn");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in [
            "seg 0",
            "seg 1",
            "seg 2",
            "placeholder",
            "L1-0",
            "L1-1",
            "L2-0 root",
            "#1 merge",
            "#2 rename",
            "#3 merge",
            "at 3.10 s on w0",
            "2.00–3.00 s",
            "worker 1",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.contains("run &lt;3&gt;"), "the title is escaped");
        assert!(svg.contains("3 segments padded to 4 leaves (1 placeholders"));
        assert!(matches!(
            render_svg("big", &MergeTree::new(MAX_LEAVES + 1), &[]),
            Err(DiagramError::TooLarge(256))
        ));
    }

    #[test]
    fn a_resumed_node_without_a_task_says_so() {
        let tree = MergeTree::new(2);
        let svg = render_svg(
            "resumed",
            &tree,
            &[span(TaskKind::Segment, "0", 0, 0.0, 1.0)],
        )
        .expect("drawn");
        assert!(svg.contains("reused or not recorded"));
    }

    proptest! {
        #[test]
        fn every_finished_merge_gets_one_rank(
            segments in 1u32..40,
            ends in prop::collection::vec(0.0f64..100.0, 64),
        ) {
            let tree = MergeTree::new(segments);
            let spans: Vec<TaskSpan> = tree
                .internal_nodes()
                .filter(|&node| tree.merge_kind(node) != MergeKind::Placeholder)
                .zip(&ends)
                .map(|(node, &end)| span(TaskKind::Merge, &node.to_string(), 0, end, end))
                .collect();
            let events = node_events(&tree, &spans);
            let mut ranks: Vec<usize> = events.iter().filter_map(|e| e.order).collect();
            ranks.sort_unstable();
            prop_assert_eq!(ranks, (1..=spans.len()).collect::<Vec<_>>());
            // A lower rank never finished later.
            let mut by_rank: Vec<(usize, f64)> = events
                .iter()
                .filter_map(|e| e.order.zip(e.task.map(|t| t.1)))
                .collect();
            by_rank.sort_unstable_by_key(|&(rank, _)| rank);
            prop_assert!(by_rank.windows(2).all(|w| w[0].1 <= w[1].1));
            prop_assert_eq!(spans.len() as u32, tree.merges_needed());
        }
    }
}
