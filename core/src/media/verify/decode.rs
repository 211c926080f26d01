//! Reading a file's video back for verify: the one place here that opens a file for decoding
//! (so a change to how sources are opened touches only [`DecodedFrames::open`]), and the frame
//! hashes that tests compare encodes by.

use super::VerifyError;
use crate::media::clock::{DtsOnlyClock, Repairer};
use crate::media::probe::{probe, MediaInfo};
use crate::media::util;
use crate::media::MediaError;
use ffmpeg_next as ffmpeg;
use std::path::Path;

/// Every frame of a file's video stream, decoded in presentation order.
pub(super) struct DecodedFrames {
    path: std::path::PathBuf,
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream_index: usize,
    /// The source's discontinuities removed, as the pipeline does.
    repairer: Repairer,
    clock: DtsOnlyClock,
    draining: bool,
    done: bool,
}

impl DecodedFrames {
    /// Opens the video stream `info` (from the probe) describes, with frame threading.
    pub(super) fn open(info: &MediaInfo) -> Result<Self, MediaError> {
        // The same opening as every other reader of a source.
        let (input, _) =
            crate::media::source::open(&crate::media::source::Source::file(&info.path)?)?;
        let failed = |source| MediaError::Decode {
            path: info.path.clone(),
            codec: info.video.codec.clone(),
            source,
        };
        let stream =
            input
                .stream(info.video.stream_index)
                .ok_or_else(|| MediaError::Unsupported {
                    path: info.path.clone(),
                    reason: "video stream is gone".into(),
                })?;
        let mut context =
            ffmpeg::codec::Context::from_parameters(stream.parameters()).map_err(failed)?;
        context.set_threading(ffmpeg::codec::threading::Config {
            kind: ffmpeg::codec::threading::Type::Frame,
            count: 0,
            ..Default::default()
        });
        let decoder = context.decoder().video().map_err(failed)?;
        Ok(Self {
            path: info.path.clone(),
            input,
            decoder,
            stream_index: info.video.stream_index,
            repairer: info.timestamp_repair.repairer(),
            clock: DtsOnlyClock::default(),
            draining: false,
            done: false,
        })
    }

    /// The next frame in presentation order, its pts in the stream's time base as the pipeline
    /// planned it; `None` (again on every later call) after the last.
    pub(super) fn next(&mut self) -> Result<Option<ffmpeg::frame::Video>, MediaError> {
        let mut frame = ffmpeg::frame::Video::empty();
        loop {
            if self.done {
                return Ok(None);
            }
            if self.decoder.receive_frame(&mut frame).is_ok() {
                // The frame's time as the pipeline planned it (best-effort timestamps of
                // dts-only sources lag behind B-frames).
                let pts = self.clock.pts_of(&frame);
                frame.set_pts(pts);
                return Ok(Some(frame));
            }
            if self.draining {
                self.done = true;
                continue;
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) if packet.stream() == self.stream_index => {
                    self.repairer.apply(&mut packet);
                    // A damaged packet costs its frame, which the frame-count check reports.
                    if self.decoder.send_packet(&packet).is_ok() {
                        self.clock.fed(&packet);
                    }
                }
                Ok(()) | Err(ffmpeg::Error::InvalidData) => {}
                Err(ffmpeg::Error::Eof) => {
                    self.draining = true;
                    let _ = self.decoder.send_eof();
                }
                Err(source) => {
                    return Err(MediaError::Read {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
    }
}

/// A hash of each decoded video frame of `path` (all planes, in presentation order): two
/// encodes are the same video exactly when these lists are equal. Hashes are stable within one
/// build of treemux.
pub fn decoded_frame_hashes(path: &Path) -> Result<Vec<u64>, VerifyError> {
    use std::hash::{Hash, Hasher};
    util::init();
    let info = probe(path)?;
    let mut frames = DecodedFrames::open(&info)?;
    let mut hashes = Vec::new();
    while let Some(frame) = frames.next()? {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (frame.width(), frame.height(), frame.format() as i32).hash(&mut hasher);
        for plane in 0..frame.planes() {
            // Only the picture's bytes: row padding up to the stride is undefined.
            // SAFETY: av_image_get_linesize only computes from its arguments.
            let row_bytes = unsafe {
                ffmpeg::ffi::av_image_get_linesize(
                    frame.format().into(),
                    frame.width() as i32,
                    plane as i32,
                )
            };
            let row_bytes = (row_bytes.max(0) as usize).min(frame.stride(plane));
            let data = frame.data(plane);
            for row in 0..frame.plane_height(plane) as usize {
                let start = row * frame.stride(plane);
                data[start..start + row_bytes].hash(&mut hasher);
            }
        }
        hashes.push(hasher.finish());
    }
    Ok(hashes)
}
