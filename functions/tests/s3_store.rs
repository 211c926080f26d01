//! The S3 object store on the local stack: small files in one PUT, large ones in parts, both
//! read back byte for byte; ranged reads of an exact version (S3 and the local directory
//! store), as the core's byte source too, and a replaced object refused as Changed.

mod common;

use common::{endpoint, sdk, stack_available};
use std::collections::BTreeMap;
use treemux_core::media::source::ByteSource as _;
use treemux_functions::aws::S3Store;
use treemux_functions::ports::{
    LocalDirStore, ObjectError, ObjectSource, ObjectStore, ObjectVersion,
};

const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn large_files_go_up_in_parts_and_come_back_identical() {
    if !stack_available() {
        return;
    }
    let config = sdk().await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("s3-store-{}", std::process::id());
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket at {}: {e}", endpoint()));
    // 5 MiB parts (S3's minimum) so a 12.5 MiB file takes three, the last one short.
    let store = S3Store {
        multipart_threshold: 6 * MIB,
        part_bytes: 5 * MIB,
        ..S3Store::new(client.clone())
    };
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, size) in [("small.bin", MIB + 3), ("large.bin", 12 * MIB + MIB / 2)] {
        // Every 4-byte word differs, so a misplaced part cannot go unnoticed.
        let bytes: Vec<u8> = (0..size / 4 + 1)
            .flat_map(|i| (i as u32).to_le_bytes())
            .take(size as usize)
            .collect();
        let source = dir.path().join(name);
        std::fs::write(&source, &bytes).expect("write");
        store
            .put_from_path(&source, &bucket, name)
            .await
            .expect("upload");
        let back = dir.path().join(format!("{name}.back"));
        let read = store
            .get_to_path(&bucket, name, &Default::default(), &back)
            .await
            .expect("download");
        assert_eq!(read, size);
        assert!(
            std::fs::read(&back).expect("read") == bytes,
            "{name}: bytes differ"
        );
    }
    let large = client
        .head_object()
        .bucket(&bucket)
        .key("large.bin")
        .send()
        .await
        .expect("head");
    assert!(
        large.e_tag().is_some_and(|tag| tag.ends_with("-3\"")),
        "large.bin was not a three-part upload: {:?}",
        large.e_tag()
    );
}

/// Without the local stack, a test that needs it says so on stderr (outside CI), naming itself and
/// the endpoint, and fails in CI: it never passes silently. Runs the test above in a child of this
/// test binary pointed at a port nothing listens on.
#[test]
fn a_missing_stack_is_a_visible_skip_or_a_failure() {
    let nowhere = "http://127.0.0.1:9";
    let run_one = |ci: bool| {
        let mut command =
            std::process::Command::new(std::env::current_exe().expect("this test binary"));
        command
            .args([
                "large_files_go_up_in_parts_and_come_back_identical",
                "--exact",
            ])
            .env("TREEMUX_LOCAL_STACK_ENDPOINT", nowhere)
            .env_remove("CI");
        if ci {
            command.env("CI", "true");
        }
        command.output().expect("the test binary runs")
    };
    let local = run_one(false);
    let stderr = String::from_utf8_lossy(&local.stderr);
    assert!(local.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "SKIPPED large_files_go_up_in_parts_and_come_back_identical: no local stack at {nowhere}"
        )),
        "the skip is printed where a test run shows it: {stderr}"
    );
    assert!(
        !run_one(true).status.success(),
        "in CI a missing stack fails the test"
    );
}

#[tokio::test]
async fn ranged_reads_get_exactly_the_announced_version() {
    if !stack_available() {
        return;
    }
    let config = sdk().await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("s3-ranges-{}", std::process::id());
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket at {}: {e}", endpoint()));
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let put = client
        .put_object()
        .bucket(&bucket)
        .key("clip.mp4")
        .body(bytes.clone().into())
        .metadata("treemux-crf", "30")
        .metadata("Treemux-Height", "720")
        .send()
        .await
        .expect("put");
    let version = ObjectVersion {
        version_id: None,
        e_tag: put.e_tag().map(|t| t.trim_matches('"').to_owned()),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let local = LocalDirStore {
        root: dir.path().to_owned(),
    };
    std::fs::create_dir_all(dir.path().join(&bucket)).expect("dir");
    std::fs::write(dir.path().join(&bucket).join("clip.mp4"), &bytes).expect("write");
    let metadata: BTreeMap<String, String> = [("treemux-crf", "30"), ("Treemux-Height", "720")]
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .into();
    local
        .put_metadata(&bucket, "clip.mp4", &metadata)
        .expect("metadata");

    let s3 = S3Store::new(client.clone());
    for (name, head, ranges) in [
        (
            "s3",
            s3.head(&bucket, "clip.mp4", &version).await,
            read_ranges(&s3, &bucket, &version).await,
        ),
        (
            "local",
            local.head(&bucket, "clip.mp4", &version).await,
            read_ranges(&local, &bucket, &version).await,
        ),
    ] {
        let head = head.expect("head");
        assert_eq!(head.size, bytes.len() as u64, "{name}: size");
        let lowercased: BTreeMap<String, String> =
            [("treemux-crf", "30"), ("treemux-height", "720")]
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .into();
        assert_eq!(
            head.metadata, lowercased,
            "{name}: metadata, names lowercased"
        );
        let [start, middle, end, past] = ranges;
        assert_eq!(start, bytes[..1000], "{name}: the first bytes");
        assert_eq!(
            middle,
            bytes[123_456..123_456 + 70_000],
            "{name}: a middle range"
        );
        assert_eq!(
            end,
            bytes[299_990..],
            "{name}: a range over the end is cut short"
        );
        assert!(past.is_empty(), "{name}: nothing past the end");
    }

    // The core reads the object as a byte source (on a blocking thread, as the media code runs).
    let source = ObjectSource {
        store: s3.clone(),
        bucket: bucket.clone(),
        key: "clip.mp4".into(),
        version: version.clone(),
        size: bytes.len() as u64,
        runtime: tokio::runtime::Handle::current(),
    };
    let read = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 5000];
        let n = source.read_at(250_000, &mut buf).expect("read_at");
        buf.truncate(n);
        buf
    })
    .await
    .expect("blocking read");
    assert_eq!(read, bytes[250_000..255_000]);

    // Replaced: the announced version is gone, and a read says so instead of mixing uploads.
    client
        .put_object()
        .bucket(&bucket)
        .key("clip.mp4")
        .body(b"another upload".to_vec().into())
        .send()
        .await
        .expect("replace");
    let changed = s3
        .read_range(&bucket, "clip.mp4", &version, 0, 100)
        .await
        .expect_err("the old version is gone");
    assert!(
        matches!(changed, ObjectError::Changed { .. }),
        "a replaced object is Changed: {changed}"
    );
    assert!(matches!(
        s3.head(&bucket, "clip.mp4", &version).await,
        Err(ObjectError::Changed { .. })
    ));
    let gone = s3
        .read_range(&bucket, "missing.mp4", &ObjectVersion::default(), 0, 10)
        .await
        .expect_err("no such key");
    assert!(matches!(gone, ObjectError::NotFound { .. }), "{gone}");
}

/// Four reads: the start, the middle, over the end, past the end.
async fn read_ranges<O: ObjectStore>(
    store: &O,
    bucket: &str,
    version: &ObjectVersion,
) -> [Vec<u8>; 4] {
    let read = |offset, len| store.read_range(bucket, "clip.mp4", version, offset, len);
    [
        read(0, 1000).await.expect("start"),
        read(123_456, 70_000).await.expect("middle"),
        read(299_990, 1000).await.expect("end"),
        read(300_000, 10).await.expect("past the end"),
    ]
}
