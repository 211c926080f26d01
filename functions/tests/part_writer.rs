//! The output streamed into a multipart upload ([`PartWriter`]): written as the mov muxer
//! writes (a header, a skip over the reserved index, media, then a rewrite of the header region
//! at the trailer), the completed object is byte for byte what the same writes make in memory,
//! in several parts; on the local stack, in S3's real 5 MiB parts.

mod common;

use common::rng;

use std::io::{Cursor, Seek, SeekFrom, Write};
use std::sync::Arc;
use treemux_core::output_plan::PartPlan;
use treemux_functions::ports::LocalDirStore;
use treemux_functions::upload::{self, MultipartStore, PartWriter};

const MIB: u64 = 1024 * 1024;

/// Writes as FFmpeg's mov muxer does with a reserved index into `out`: `ftyp`, a skip over
/// `reserve` bytes, `media` bytes in chunks of seeded sizes, then the index into the reserved
/// room and the `mdat` size, and a seek back to the end.
fn mov_like_writes(out: &mut (impl Write + Seek), reserve: u64, media: u64, seed: u64) {
    let mut rng = rng::Rng(seed);
    out.write_all(b"ftyp-header-of-32-bytes-exactly!")
        .expect("write");
    out.seek(SeekFrom::Current(reserve as i64)).expect("skip");
    let mdat_at = out.stream_position().expect("tell");
    out.write_all(b"\0\0\0\0mdat").expect("write");
    let mut written = 0u64;
    let mut word = 0u32;
    while written < media {
        let chunk = (1 + rng.below(200_000)).min(media - written);
        let bytes: Vec<u8> = (0..chunk)
            .map(|_| {
                word = word.wrapping_add(1);
                (word % 251) as u8
            })
            .collect();
        out.write_all(&bytes).expect("write");
        written += chunk;
    }
    let end = out.stream_position().expect("tell");
    out.seek(SeekFrom::Start(32)).expect("seek back");
    out.write_all(&vec![0x6d; (reserve / 2) as usize])
        .expect("index");
    out.seek(SeekFrom::Start(mdat_at)).expect("seek back");
    out.write_all(&((end - mdat_at) as u32).to_be_bytes())
        .expect("size");
    out.seek(SeekFrom::Start(end)).expect("seek to end");
}

/// Streams the writes into `store` with `plan`; returns the completed object's bytes source
/// and the number of parts.
async fn stream<M: MultipartStore + 'static>(
    store: Arc<M>,
    bucket: &str,
    key: &str,
    plan: PartPlan,
    reserve: u64,
    media: u64,
    seed: u64,
) -> (u64, usize) {
    let upload_id = store.create_upload(bucket, key).await.expect("create");
    let mut writer = PartWriter::new(
        store.clone(),
        tokio::runtime::Handle::current(),
        bucket,
        key,
        &upload_id,
        plan,
    );
    let parts = writer.parts.clone();
    tokio::task::spawn_blocking(move || mov_like_writes(&mut writer, reserve, media, seed))
        .await
        .expect("writes");
    let parts = std::mem::take(&mut *parts.lock().expect("lock"));
    let count = parts.uploaded.len() + 1 + usize::from(!parts.tail.is_empty());
    let len = upload::complete(&*store, bucket, key, &upload_id, parts)
        .await
        .expect("complete");
    (len, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_parts_make_exactly_the_bytes_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(LocalDirStore {
        root: dir.path().to_owned(),
    });
    for seed in 0..4 {
        let (reserve, media) = (300_000 + seed * 70_000, 4_000_000 + seed * 900_001);
        // Part 1 holds the reserved index and 1 MiB beyond it (2 MiB here), then parts of 256 KiB.
        let plan = PartPlan {
            part_bytes: 256 * 1024,
            first_part_bytes: 256 * 1024,
        };
        let key = format!("out-{seed}.mp4");
        let (len, parts) = stream(store.clone(), "out", &key, plan, reserve, media, seed).await;
        let mut expected = Cursor::new(Vec::new());
        mov_like_writes(&mut expected, reserve, media, seed);
        let object = std::fs::read(dir.path().join("out").join(&key)).expect("object");
        assert_eq!(len, object.len() as u64, "seed {seed}");
        assert!(object == expected.into_inner(), "seed {seed}: bytes differ");
        assert!(parts > 5, "seed {seed}: only {parts} parts");
        assert!(
            !dir.path()
                .join(".uploads")
                .read_dir()
                .expect("uploads")
                .any(|_| true),
            "a completed upload leaves no parts behind"
        );
    }
    // An output smaller than one part is a single-part upload.
    let plan = PartPlan {
        part_bytes: 8 * MIB,
        first_part_bytes: 8 * MIB,
    };
    let (len, parts) = stream(store.clone(), "out", "small.mp4", plan, 4096, 10_000, 9).await;
    assert_eq!((len, parts), (32 + 4096 + 8 + 10_000, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_takes_the_stream_in_real_parts() {
    if !common::stack_available() {
        return;
    }
    let config = common::sdk().await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("part-writer-{}", std::process::id());
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let store = Arc::new(treemux_functions::aws::S3Store::new(client.clone()));
    let plan = PartPlan {
        part_bytes: 5 * MIB,
        first_part_bytes: 5 * MIB,
    };
    let (reserve, media) = (400_000, 12 * MIB);
    let (len, parts) = stream(store, &bucket, "out.mp4", plan, reserve, media, 3).await;
    assert_eq!(parts, 3);
    let object = client
        .get_object()
        .bucket(&bucket)
        .key("out.mp4")
        .send()
        .await
        .expect("get");
    assert!(
        object.e_tag().is_some_and(|tag| tag.ends_with("-3\"")),
        "not a three-part upload: {:?}",
        object.e_tag()
    );
    let bytes = object.body.collect().await.expect("body").into_bytes();
    let mut expected = Cursor::new(Vec::new());
    mov_like_writes(&mut expected, reserve, media, 3);
    assert_eq!(len, bytes.len() as u64);
    assert!(
        bytes.as_ref() == expected.into_inner().as_slice(),
        "bytes differ"
    );
}
