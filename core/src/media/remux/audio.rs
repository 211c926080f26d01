//! The output's audio streams (1…): one per extracted track, with its descriptive tags and
//! disposition; then fed the audio file's packets, the intermediate offset taken off and missing
//! durations restored from the next packet's pts.

use super::ticks_to_seconds;
use crate::media::probe::MediaInfo;
use crate::media::util;
use crate::media::MediaError;
use ffmpeg_next as ffmpeg;
use ffmpeg_next::Rescale as _;
use std::path::Path;

/// Adds a stream per track of the extracted audio `input` to `muxer` (after its streams so far:
/// after the video of a remux, so track `n` is stream `n + 1`). Returns each stream's input time base and the bytes of their
/// headers the index holds verbatim (tags, extradata).
pub(crate) fn add_streams(
    muxer: &mut ffmpeg::format::context::Output,
    input: &ffmpeg::format::context::Input,
    info: &MediaInfo,
    write_failed: &dyn Fn(ffmpeg::Error) -> MediaError,
) -> Result<(Vec<ffmpeg::Rational>, u64), MediaError> {
    let mut time_bases = Vec::new();
    let mut verbatim_bytes = 0u64;
    let first = muxer.nb_streams() as usize;
    for (position, (stream, track)) in input.streams().zip(&info.audio).enumerate() {
        let mut added = muxer
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
            .map_err(write_failed)?;
        added.set_parameters(stream.parameters());
        added.set_time_base(stream.time_base());
        let mut metadata = ffmpeg::Dictionary::new();
        for (key, value) in &track.metadata {
            // Muxer-specific bookkeeping tags would be stale; keep the descriptive ones.
            if matches!(
                key.as_str(),
                "language" | "title" | "handler_name" | "comment"
            ) {
                metadata.set(key, value);
                verbatim_bytes += (key.len() + value.len()) as u64;
            }
        }
        added.set_metadata(metadata);
        // SAFETY: the stream's codecpar was just set and is owned by the muxer.
        verbatim_bytes += unsafe { (*(*added.as_mut_ptr()).codecpar).extradata_size.max(0) as u64 };
        util::clear_codec_tag(muxer, position + first, 0);
        util::set_disposition(muxer, position + first, track.disposition);
        time_bases.push(stream.time_base());
    }
    Ok((time_bases, verbatim_bytes))
}

/// The audio packets on their way into streams 1…, in the audio file's order.
pub(crate) struct AudioOutput<'a> {
    /// The extracted audio file and its open input; `None` without audio.
    input: Option<(&'a Path, ffmpeg::format::context::Input)>,
    next: Option<ffmpeg::Packet>,
    /// Per track: its input time base, its output stream's, the ticks taken off its packets.
    time_bases: Vec<ffmpeg::Rational>,
    output_time_bases: Vec<ffmpeg::Rational>,
    offsets: Vec<i64>,
    /// Per track: packets written so far, and every packet's pts (pass 1).
    written: Vec<usize>,
    pts: &'a [Vec<i64>],
    info: &'a MediaInfo,
    /// The output stream of track 0.
    first_stream: usize,
    /// When laying the output out: per track, where its packets' bytes are copied, in order.
    raw: Option<Vec<(std::path::PathBuf, std::io::BufWriter<std::fs::File>)>>,
}

impl<'a> AudioOutput<'a> {
    /// `time_bases` from [`add_streams`]; `output_time_bases`: stream 1 onwards, as the header
    /// set them; `pts`: each track's packet pts (pass 1); `first_stream`: track 0's output
    /// stream.
    pub(crate) fn start(
        input: Option<(&'a Path, ffmpeg::format::context::Input)>,
        time_bases: Vec<ffmpeg::Rational>,
        output_time_bases: Vec<ffmpeg::Rational>,
        pts: &'a [Vec<i64>],
        info: &'a MediaInfo,
        first_stream: usize,
    ) -> Result<Self, MediaError> {
        let offsets = time_bases
            .iter()
            .map(|&time_base| {
                util::offset_ticks(info.intermediate_offset_seconds, time_base)
                    - util::micros_to_ticks_up(info.output_shift_micros, time_base)
            })
            .collect();
        let mut output = Self {
            input,
            next: None,
            written: vec![0; time_bases.len()],
            time_bases,
            output_time_bases,
            offsets,
            pts,
            info,
            first_stream,
            raw: None,
        };
        output.next = output.read()?;
        Ok(output)
    }

    /// Copies every packet's bytes, per track, to `files` (one per track, created here) as they
    /// are written: the audio's bytes for filling the output by parts.
    pub(super) fn copy_bytes_to(&mut self, files: &[std::path::PathBuf]) -> Result<(), MediaError> {
        let writers = files
            .iter()
            .map(|path| {
                std::fs::File::create(path)
                    .map(|file| (path.clone(), std::io::BufWriter::new(file)))
                    .map_err(MediaError::io(path))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.raw = Some(writers);
        Ok(())
    }

    /// Flushes the copies of [`AudioOutput::copy_bytes_to`]; returns each track's bytes.
    pub(super) fn finish_copies(&mut self) -> Result<Vec<u64>, MediaError> {
        let mut sizes = Vec::new();
        for (path, writer) in self.raw.take().unwrap_or_default() {
            let file = writer
                .into_inner()
                .map_err(|e| MediaError::io(&path)(e.into_error()))?;
            file.sync_all().map_err(MediaError::io(&path))?;
            sizes.push(file.metadata().map_err(MediaError::io(&path))?.len());
        }
        Ok(sizes)
    }

    /// The next packet of the audio file, its timestamps without the intermediate offset.
    fn read(&mut self) -> Result<Option<ffmpeg::Packet>, MediaError> {
        let Some((path, input)) = self.input.as_mut() else {
            return Ok(None);
        };
        let mut packet = util::read_packet(path, input)?;
        if let Some(packet) = packet.as_mut() {
            util::shift_packet(packet, -self.offsets[packet.stream()]);
        }
        Ok(packet)
    }

    /// The next packet's decode time in seconds; `None` when all are written.
    pub(crate) fn due(&self) -> Option<f64> {
        self.next.as_ref().map(|a| {
            ticks_to_seconds(
                a.dts().or(a.pts()).unwrap_or(0),
                self.time_bases[a.stream()],
            )
        })
    }

    /// Writes the next packet (see [`AudioOutput::due`]) and reads the one after.
    pub(crate) fn write_next(
        &mut self,
        muxer: &mut ffmpeg::format::context::Output,
        write_failed: &dyn Fn(ffmpeg::Error) -> MediaError,
    ) -> Result<(), MediaError> {
        let mut packet = self.next.take().expect("written only when due");
        let position = packet.stream();
        let index = self.written[position];
        self.written[position] += 1;
        if packet.duration() <= 0 {
            let pts_list = &self.pts[position];
            let track = &self.info.audio[position];
            let duration = match (pts_list.get(index), pts_list.get(index + 1)) {
                (Some(pts), Some(next)) => next - pts,
                _ => track
                    .last_packet_duration
                    .rescale(util::rational(track.time_base), self.time_bases[position]),
            };
            packet.set_duration(duration.max(0));
        }
        packet.rescale_ts(self.time_bases[position], self.output_time_bases[position]);
        packet.set_stream(position + self.first_stream);
        packet.set_position(-1);
        if let Some((path, writer)) = self.raw.as_mut().and_then(|raw| raw.get_mut(position)) {
            use std::io::Write as _;
            writer
                .write_all(packet.data().unwrap_or_default())
                .map_err(MediaError::io(&*path))?;
        }
        packet.write_interleaved(muxer).map_err(write_failed)?;
        self.next = self.read()?;
        Ok(())
    }
}
