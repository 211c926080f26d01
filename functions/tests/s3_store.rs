//! The S3 object store on the local stack: small files in one PUT, large ones in parts, both
//! read back byte for byte.

mod common;

use common::{endpoint, sdk, stack_available};
use treemux_functions::aws::S3Store;
use treemux_functions::ports::ObjectStore;

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
