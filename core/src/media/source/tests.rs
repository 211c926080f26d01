//! The read-ahead and the saved ranges over a counted in-memory pattern.

use super::reader::{Cursor, AVIO_BUFFER, MAX_AHEAD, MIN_AHEAD, WINDOWS};
use super::*;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::{Arc, Mutex};
/// Bytes whose value is their offset (mod 251), and every read counted.
#[derive(Debug)]
struct Pattern {
    size: u64,
    reads: Mutex<Vec<Range<u64>>>,
}

fn byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

impl ByteSource for Pattern {
    fn size_bytes(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        let n = buf.len().min(self.size.saturating_sub(offset) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = byte(offset + i as u64);
        }
        self.reads
            .lock()
            .expect("lock")
            .push(offset..offset + n as u64);
        Ok(n)
    }
}

fn cursor(bytes: Arc<dyn ByteSource>, hint: Option<Range<u64>>) -> Cursor {
    Cursor::new(
        &Source::new("test", bytes).with_hint(hint),
        ReadFailure::default(),
    )
}

#[test]
fn read_ahead_grows_while_sequential_and_restarts_small_after_a_seek() {
    let pattern = Arc::new(Pattern {
        size: 64 * 1024 * 1024,
        reads: Mutex::default(),
    });
    let mut reader = cursor(pattern.clone(), None);
    let mut buf = vec![0u8; AVIO_BUFFER];
    let mut total = 0u64;
    while total < 20 * 1024 * 1024 {
        let n = reader.read(&mut buf).expect("read");
        assert!(buf[..n]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == byte(total + i as u64)));
        total += n as u64;
    }
    let sizes: Vec<u64> = pattern
        .reads
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.end - r.start)
        .collect();
    assert_eq!(sizes[0], MIN_AHEAD as u64);
    assert!(sizes
        .windows(2)
        .all(|w| w[1] == (w[0] * 2).min(MAX_AHEAD as u64)));
    assert!(
        sizes.iter().all(|&s| s <= MAX_AHEAD as u64),
        "bounded: {sizes:?}"
    );
    assert!(
        reader.windows.len() <= WINDOWS
            && reader
                .windows
                .iter()
                .all(|w| w.data.capacity() <= MAX_AHEAD),
        "the windows stay bounded"
    );
    // A seek far away starts small again.
    pattern.reads.lock().expect("lock").clear();
    reader
        .seek(SeekFrom::Start(50 * 1024 * 1024))
        .expect("seek");
    let n = reader.read(&mut buf).expect("read");
    assert_eq!(n, buf.len());
    let reads = pattern.reads.lock().expect("lock").clone();
    assert_eq!(
        reads,
        vec![50 * 1024 * 1024..50 * 1024 * 1024 + MIN_AHEAD as u64]
    );
}

#[test]
fn read_ahead_stops_at_the_hint() {
    let pattern = Arc::new(Pattern {
        size: 8 * 1024 * 1024,
        reads: Mutex::default(),
    });
    let hint = 1_000_000..1_300_000;
    let mut reader = cursor(pattern.clone(), Some(hint.clone()));
    reader.seek(SeekFrom::Start(hint.start)).expect("seek");
    let mut buf = vec![0u8; AVIO_BUFFER];
    let mut at = hint.start;
    while at < hint.end {
        at += reader.read(&mut buf).expect("read") as u64;
    }
    let fetched: u64 = pattern
        .reads
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.end - r.start)
        .sum();
    assert!(
        fetched <= hint.end - hint.start + AVIO_BUFFER as u64,
        "fetched {fetched} bytes for a {} byte hint",
        hint.end - hint.start
    );
}

#[test]
fn saved_ranges_merge_serve_and_round_trip() {
    let mut saved = SavedRanges::default();
    saved.insert(100, &[1; 10]);
    saved.insert(200, &[2; 10]);
    saved.insert(105, &[3; 20]);
    saved.insert(125, &[4; 5]);
    assert_eq!(saved.spans(), vec![100..130, 200..210]);
    assert_eq!(
        saved.at(104),
        Some(&[1u8; 1][..]).map(|_| &saved.ranges[0].1[4..])
    );
    assert_eq!(saved.at(130), None);
    assert_eq!(
        SavedRanges::from_bytes(&saved.to_bytes()),
        Some(saved.clone())
    );
    assert_eq!(SavedRanges::from_bytes(b"not ranges"), None);
    let pattern = Arc::new(Pattern {
        size: 1000,
        reads: Mutex::default(),
    });
    let overlay = OverlaySource {
        saved,
        inner: pattern.clone(),
    };
    let mut buf = [0u8; 50];
    // From 90: the store up to the saved range at 100, then the saved bytes.
    assert_eq!(overlay.read_at(90, &mut buf).expect("read"), 10);
    assert_eq!(overlay.read_at(100, &mut buf).expect("read"), 30);
    assert_eq!(buf[0], 1);
    assert_eq!(*pattern.reads.lock().expect("lock"), vec![90..100]);
}
