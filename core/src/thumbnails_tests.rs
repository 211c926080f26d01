use super::*;

const TB: TimeBase = TimeBase { num: 1, den: 25 };

/// `count` frames at 25 fps from pts `first`.
fn frames(first: i64, count: i64) -> Vec<FrameInfo> {
    (0..count)
        .map(|i| FrameInfo {
            pts: first + i,
            dts: None,
            key: i % 25 == 0,
        })
        .collect()
}

fn segment(index: u32, start: Option<i64>, end: Option<i64>) -> Segment {
    Segment {
        index,
        start_pts: start,
        end_pts: end,
        decode_from: None,
        frames: 0,
        lead_in_frames: 0,
        encode_cost: 0,
    }
}

fn request(interval: Option<f64>, poster: Option<f64>) -> ThumbnailRequest {
    ThumbnailRequest::from_seconds(interval, poster).expect("a valid request")
}

#[test]
fn tiles_are_the_first_frame_at_or_after_each_time() {
    // 10.5 s at 25 fps from pts 100; a tile every 3 s: 0, 3, 6, 9.
    let plan = plan_thumbnails(
        &request(Some(3.0), None),
        &frames(100, 263),
        TB,
        100,
        10.52,
        (1920, 1080),
    )
    .expect("plan");
    assert_eq!(plan.tile_pts, vec![100, 175, 250, 325]);
    // 10% in: 1.052 s, the first frame at or after it is 1.08 s (pts 127).
    assert_eq!(plan.poster_pts, 127);
    assert_eq!(plan.tile_size, (160, 90));
    assert_eq!(plan.poster_size, (1920, 1080));
}

#[test]
fn frames_between_times_and_past_the_end() {
    // Frames every 0.4 s (10 ticks): the tile at 1 s takes the frame at 1.2 s.
    let sparse: Vec<FrameInfo> = (0..5)
        .map(|i| FrameInfo {
            pts: i * 10,
            dts: None,
            key: true,
        })
        .collect();
    let plan = plan_thumbnails(
        &request(Some(1.0), Some(1.99)),
        &sparse,
        TB,
        0,
        2.0,
        (640, 480),
    )
    .expect("plan");
    assert_eq!(plan.tile_pts, vec![0, 30]);
    // No frame at or after 1.99 s: the last one.
    assert_eq!(plan.poster_pts, 40);
    assert_eq!(plan.tile_size, (160, 120));
}

#[test]
fn short_clips_take_the_first_frame_as_poster() {
    let plan = plan_thumbnails(&request(None, None), &frames(0, 25), TB, 0, 1.0, (100, 100))
        .expect("plan");
    assert_eq!(plan.poster_pts, 0);
    assert!(plan.tile_pts.is_empty());
    // Narrower than a tile: kept.
    assert_eq!(plan.tile_size, (100, 100));
}

#[test]
fn bad_requests_are_refused() {
    let all = frames(0, 250);
    for interval in [0.0, 0.0004, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(ThumbnailRequest::from_seconds(Some(interval), None), None);
    }
    for at in [-0.5, f64::NAN] {
        assert_eq!(ThumbnailRequest::from_seconds(None, Some(at)), None);
    }
    let zero = ThumbnailRequest {
        interval_ms: Some(0),
        poster_at_ms: None,
    };
    assert_eq!(
        plan_thumbnails(&zero, &all, TB, 0, 10.0, (64, 64)),
        Err(ThumbnailError::Interval(0))
    );
    for at in [10.01, 99.0] {
        assert!(matches!(
            plan_thumbnails(&request(None, Some(at)), &all, TB, 0, 10.0, (64, 64)),
            Err(ThumbnailError::PosterAt { .. })
        ));
    }
    assert!(plan_thumbnails(&request(None, Some(10.0)), &all, TB, 0, 10.0, (64, 64)).is_ok());
    assert_eq!(
        plan_thumbnails(&request(None, None), &[], TB, 0, 10.0, (64, 64)),
        Err(ThumbnailError::NoFrames)
    );
}

#[test]
fn every_tile_belongs_to_exactly_one_segment() {
    let plan = plan_thumbnails(
        &request(Some(0.7), Some(5.0)),
        &frames(0, 250),
        TB,
        0,
        10.0,
        (1280, 720),
    )
    .expect("plan");
    let segments = [
        segment(0, None, Some(60)),
        segment(1, Some(60), Some(61)),
        segment(2, Some(61), Some(200)),
        segment(3, Some(200), None),
    ];
    let mut taken: Vec<usize> = segments
        .iter()
        .flat_map(|s| plan.tiles_of(s).into_iter().map(|(k, _)| k))
        .collect();
    assert_eq!(taken.len(), plan.tile_pts.len());
    taken.sort_unstable();
    assert_eq!(taken, (0..plan.tile_pts.len()).collect::<Vec<_>>());
    assert_eq!(
        segments.iter().filter(|s| plan.has_poster(s)).count(),
        1,
        "one segment takes the poster"
    );
    assert!(plan.has_poster(&segments[2]));
    // Segment 1's one frame (pts 60 = 2.4 s) is no tile time's first frame at or after: 2.1 s
    // takes pts 53 (2.12 s), 2.8 s takes pts 70.
    assert!(plan.tiles_of(&segments[1]).is_empty());
}

#[test]
fn grid_places_tiles_row_by_row_over_sheets() {
    let grid = SheetGrid::new(234, (160, 90));
    assert_eq!(grid.sheets(), 3);
    assert_eq!(
        grid.place(0),
        TilePlace {
            sheet: 0,
            x: 0,
            y: 0,
            w: 160,
            h: 90
        }
    );
    assert_eq!(grid.place(13).x, 480);
    assert_eq!(grid.place(13).y, 90);
    assert_eq!(grid.place(99).sheet, 0);
    assert_eq!((grid.place(99).x, grid.place(99).y), (1440, 810));
    assert_eq!(grid.place(100).sheet, 1);
    assert_eq!(grid.place(233).sheet, 2);
    assert_eq!(grid.sheet_size(0), (1600, 900));
    // 34 tiles on the last sheet: 4 rows.
    assert_eq!(grid.sheet_size(2), (1600, 360));
    // Fewer tiles than a row: a row of that many.
    let small = SheetGrid::new(3, (160, 120));
    assert_eq!(small.sheets(), 1);
    assert_eq!(small.sheet_size(0), (480, 120));
    // Every tile inside its sheet, none overlapping.
    for grid in [grid, small, SheetGrid::new(100, (10, 10))] {
        let mut seen = std::collections::BTreeSet::new();
        for k in 0..grid.tiles {
            let place = grid.place(k);
            let (w, h) = grid.sheet_size(place.sheet);
            assert!(place.x + place.w <= w && place.y + place.h <= h, "{k}");
            assert!(seen.insert((place.sheet, place.x, place.y)), "{k}");
        }
    }
}

#[test]
fn names_beside_a_file_or_in_a_package() {
    let file = ThumbnailNames::new(Some("out"));
    assert_eq!(file.poster(), "out.poster.jpg");
    assert_eq!(file.index(), "out.thumbnails.vtt");
    assert_eq!(file.sheet(2), "out.thumbnails-2.jpg");
    let package = ThumbnailNames::new(None);
    assert_eq!(package.poster(), "poster.jpg");
    assert_eq!(package.index(), "thumbnails.vtt");
    assert_eq!(package.sheet(0), "thumbnails-0.jpg");
}

#[test]
fn vtt_cues_are_contiguous_and_cover_the_video() {
    let plan = plan_thumbnails(
        &request(Some(10.0), None),
        &frames(0, 25 * 3700),
        TB,
        0,
        3700.0,
        (320, 240),
    )
    .expect("plan");
    let text = vtt_text(&plan, &ThumbnailNames::new(Some("film")));
    assert!(text.starts_with(
        "WEBVTT\n\n00:00:00.000 --> 00:00:10.000\nfilm.thumbnails-0.jpg#xywh=0,0,160,120\n"
    ));
    assert!(
        text.contains("\n00:16:40.000 --> 00:16:50.000\nfilm.thumbnails-1.jpg#xywh=0,0,160,120\n")
    );
    assert!(text.ends_with(
        "\n01:01:30.000 --> 01:01:40.000\nfilm.thumbnails-3.jpg#xywh=1440,720,160,120\n"
    ));
    assert_eq!(text.matches(" --> ").count(), 370);
    assert_eq!(
        vtt_text(&request_plan_without_tiles(), &ThumbnailNames::new(None)),
        ""
    );
}

fn request_plan_without_tiles() -> ThumbnailPlan {
    plan_thumbnails(&request(None, None), &frames(0, 50), TB, 0, 2.0, (64, 64)).expect("plan")
}

#[test]
fn vtt_times_round_to_milliseconds() {
    assert_eq!(vtt_time(0.0), "00:00:00.000");
    assert_eq!(vtt_time(1.2345), "00:00:01.235");
    assert_eq!(vtt_time(3599.9999), "01:00:00.000");
    assert_eq!(vtt_time(36_000.5), "10:00:00.500");
}
