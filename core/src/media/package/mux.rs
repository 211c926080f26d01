//! One pass of FFmpeg's `hls` or `dash` muxer over every rendition's segment files and the
//! audio (interleaved by decode time, timestamps as the final mux derives them), then the HLS
//! master playlist from what was written.

use super::codecs::{audio_codec_string, video_codec_string};
use super::{PackageFormat, PackagedRendition};
use crate::extras::ExtrasPlan;
use crate::media::merge::LeafVideo;
use crate::media::probe::MediaInfo;
use crate::media::remux::{audio, audio_pts, video};
use crate::media::util;
use crate::media::MediaError;
use crate::settings::{Container, EncodeSettings};
use ffmpeg_next as ffmpeg;
use std::ffi::CString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One video rendition to package: its segment files in order and its settings.
#[derive(Debug)]
pub struct PackageVideo<'a> {
    pub leaves: Vec<PathBuf>,
    /// Every packet's pts in file order, when the merged index lists them.
    pub pts: Option<Vec<i64>>,
    pub settings: &'a EncodeSettings,
}

/// Everything a package holds: the renditions (tallest first), the job's extracted audio.
#[derive(Debug)]
pub struct PackageStreams<'a> {
    pub video: Vec<PackageVideo<'a>>,
    pub audio: Option<PathBuf>,
    /// The source's probe (timestamps, languages).
    pub info: &'a MediaInfo,
}

pub(super) struct Written {
    pub(super) renditions: Vec<PackagedRendition>,
    pub(super) video_packets: u64,
    pub(super) audio_packets: u64,
}

/// Directory names of the HLS media playlists.
fn video_name(rung: usize) -> String {
    format!("v{rung}")
}
fn audio_name(track: usize) -> String {
    format!("a{track}")
}

pub(super) fn write(
    streams: &PackageStreams<'_>,
    format: PackageFormat,
    dir: &Path,
    manifest_name: &Path,
    fragment_seconds: f64,
) -> Result<Written, MediaError> {
    let info = streams.info;
    let name = dir.join(manifest_name);
    let write_failed = |source| MediaError::Write {
        path: name.clone(),
        source,
    };
    let url = match format {
        PackageFormat::Hls => dir.join("%v").join("index.m3u8"),
        PackageFormat::Dash => name.clone(),
    };
    let mut muxer = alloc_output(
        &url,
        match format {
            PackageFormat::Hls => "hls",
            PackageFormat::Dash => "dash",
        },
    )
    .map_err(&write_failed)?;
    let no_extras = ExtrasPlan::default();
    let mut inputs = Vec::with_capacity(streams.video.len());
    for rendition in &streams.video {
        let input = LeafVideo::open(&rendition.leaves)?;
        video::add_stream(
            &mut muxer,
            &input,
            info,
            rendition.settings,
            &no_extras,
            Container::Mp4,
            &write_failed,
        )?;
        let pts = match &rendition.pts {
            Some(pts) => pts.clone(),
            None => input.all_pts()?,
        };
        let bytes: u64 = rendition
            .leaves
            .iter()
            .map(|leaf| std::fs::metadata(leaf).map_or(0, |meta| meta.len()))
            .sum();
        set_bit_rate(&mut muxer, bytes, info.video.duration_seconds());
        inputs.push((input, pts));
    }
    let videos = inputs.len();
    let (audio_input, audio_time_bases, per_track_pts) = match &streams.audio {
        Some(path) => {
            let input = util::open_input(path)?;
            let (time_bases, _) = audio::add_streams(&mut muxer, &input, info, &write_failed)?;
            let pts = audio_pts(path)?;
            let track_bytes = audio_track_bytes(path)?;
            for (track, bytes) in track_bytes.into_iter().enumerate() {
                let stream = videos + track;
                set_stream_bit_rate(&mut muxer, stream, bytes, info.video.duration_seconds());
            }
            (Some((path.as_path(), input)), time_bases, pts)
        }
        None => (None, Vec::new(), Vec::new()),
    };
    let tracks = audio_time_bases.len();
    // Each rendition's displayed aspect: its size and pixel aspect as the segments carry them,
    // the pixel aspect also on the stream itself, where the dash muxer reads it (as the ffmpeg
    // CLI sets it).
    let mut shapes = Vec::with_capacity(streams.video.len());
    for (index, rendition) in streams.video.iter().enumerate() {
        let (width, height) = crate::media::convert::output_size(&info.video, rendition.settings);
        let sar = match muxer.stream_mut(index) {
            Some(mut stream) => {
                // SAFETY: the stream and its parameters belong to the open muxer.
                unsafe {
                    let stream = stream.as_mut_ptr();
                    let sar = (*(*stream).codecpar).sample_aspect_ratio;
                    (*stream).sample_aspect_ratio = sar;
                    (sar.num, sar.den)
                }
            }
            None => (0, 1),
        };
        shapes.push(PictureShape { width, height, sar });
    }
    let options = muxer_options(format, dir, info, &shapes, tracks, fragment_seconds);
    muxer.write_header_with(options).map_err(&write_failed)?;
    let time_bases: Vec<ffmpeg::Rational> = muxer.streams().map(|s| s.time_base()).collect();
    let mut outputs = Vec::with_capacity(videos);
    for (rung, (input, pts)) in inputs.into_iter().enumerate() {
        outputs.push(video::VideoOutput::start(
            input,
            None,
            &pts,
            info,
            time_bases[rung],
            rung,
        )?);
    }
    let mut audio_output = audio::AudioOutput::start(
        audio_input,
        audio_time_bases,
        time_bases[videos..].to_vec(),
        &per_track_pts,
        info,
        videos,
    )?;
    let (mut video_packets, mut audio_packets) = (0u64, 0u64);
    loop {
        let video_due = outputs
            .iter()
            .enumerate()
            .filter_map(|(rung, output)| output.due().map(|due| (due, rung)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let audio_due = audio_output.due();
        match (video_due, audio_due) {
            (None, None) => break,
            (Some((due, rung)), audio) if audio.is_none_or(|at| due <= at) => {
                outputs[rung]
                    .write_next(&mut muxer, &write_failed)
                    .map_err(|failure| failure.into_error(&name))?;
                video_packets += 1;
            }
            _ => {
                audio_output.write_next(&mut muxer, &write_failed)?;
                audio_packets += 1;
            }
        }
    }
    muxer.write_trailer().map_err(&write_failed)?;
    let codecs: Vec<Option<String>> = muxer
        .streams()
        .map(|stream| {
            let parameters = stream.parameters();
            // SAFETY: the parameters belong to the muxer's stream, alive for this closure.
            let extradata = unsafe {
                let par = parameters.as_ptr();
                if (*par).extradata.is_null() || (*par).extradata_size <= 0 {
                    &[][..]
                } else {
                    std::slice::from_raw_parts((*par).extradata, (*par).extradata_size as usize)
                }
            };
            if stream.index() < videos {
                video_codec_string(parameters.id(), extradata)
            } else {
                audio_codec_string(parameters.id(), extradata)
            }
        })
        .collect();
    drop(muxer);

    let mut renditions = Vec::with_capacity(videos);
    for (rung, rendition) in streams.video.iter().enumerate() {
        let (width, height) = crate::media::convert::output_size(&info.video, rendition.settings);
        let codec = codecs[rung]
            .clone()
            .ok_or_else(|| MediaError::Unsupported {
                path: name.clone(),
                reason: format!(
                "{} packaging needs H.264 or H.265 video with its headers; rendition {rung} has \
                 none this can name",
                format.name()
            ),
            })?;
        let (playlist, fragments) = match format {
            PackageFormat::Hls => {
                let playlist = PathBuf::from(video_name(rung)).join("index.m3u8");
                (playlist.clone(), hls_fragments(&dir.join(&playlist))?)
            }
            PackageFormat::Dash => (manifest_name.to_owned(), dash_fragments(dir, rung)?),
        };
        renditions.push(rendition_report(playlist, width, height, codec, &fragments));
    }
    if format == PackageFormat::Hls {
        let audio_codecs: Vec<String> = codecs[videos..]
            .iter()
            .enumerate()
            .map(|(track, codec)| {
                codec.clone().ok_or_else(|| MediaError::Unsupported {
                    path: name.clone(),
                    reason: format!("HLS cannot name the codec of audio track {track}"),
                })
            })
            .collect::<Result<_, _>>()?;
        let mut audio_rates = Vec::with_capacity(tracks);
        for track in 0..tracks {
            let playlist = dir.join(audio_name(track)).join("index.m3u8");
            let report = rendition_report(
                playlist.clone(),
                0,
                0,
                String::new(),
                &hls_fragments(&playlist)?,
            );
            audio_rates.push((report.peak_bitrate, report.average_bitrate));
        }
        let master = master_playlist(info, &renditions, &audio_codecs, &audio_rates);
        std::fs::write(&name, master).map_err(MediaError::io(&name))?;
    }
    Ok(Written {
        renditions,
        video_packets,
        audio_packets,
    })
}

/// A muxer context for `url` without opening it: HLS and DASH open their own files.
fn alloc_output(url: &Path, muxer: &str) -> Result<ffmpeg::format::context::Output, ffmpeg::Error> {
    let url =
        CString::new(url.to_string_lossy().as_bytes()).map_err(|_| ffmpeg::Error::InvalidData)?;
    let muxer = CString::new(muxer).map_err(|_| ffmpeg::Error::InvalidData)?;
    let mut context = std::ptr::null_mut();
    // SAFETY: both strings outlive the call; on success the context is owned by the wrapper.
    unsafe {
        match ffmpeg::ffi::avformat_alloc_output_context2(
            &mut context,
            std::ptr::null_mut(),
            muxer.as_ptr(),
            url.as_ptr(),
        ) {
            0 => Ok(ffmpeg::format::context::Output::wrap(context)),
            error => Err(ffmpeg::Error::from(error)),
        }
    }
}

/// The muxer's options: fMP4 fragments of `fragment_seconds`, VOD playlists, the HLS
/// variant map (one per rendition and per audio track, the audio in group `audio`) or the DASH
/// adaptation sets (video, audio).
fn muxer_options(
    format: PackageFormat,
    dir: &Path,
    info: &MediaInfo,
    shapes: &[PictureShape],
    tracks: usize,
    fragment_seconds: f64,
) -> ffmpeg::Dictionary<'static> {
    let videos = shapes.len();
    let mut options = ffmpeg::Dictionary::new();
    let seconds = format!("{fragment_seconds}");
    match format {
        PackageFormat::Hls => {
            let group = if tracks > 0 { ",agroup:audio" } else { "" };
            let mut map: Vec<String> = (0..videos)
                .map(|rung| format!("v:{rung}{group},name:{}", video_name(rung)))
                .collect();
            map.extend((0..tracks).map(|track| {
                let language = info.audio[track].language().unwrap_or("und");
                format!(
                    "a:{track},agroup:audio,name:{},language:{language}{}",
                    audio_name(track),
                    if track == 0 { ",default:yes" } else { "" }
                )
            }));
            options.set("var_stream_map", &map.join(" "));
            options.set("hls_segment_type", "fmp4");
            options.set("hls_playlist_type", "vod");
            options.set("hls_time", &seconds);
            options.set("hls_flags", "independent_segments");
            options.set(
                "hls_segment_filename",
                &dir.join("%v").join("seg_%d.m4s").to_string_lossy(),
            );
            options.set("hls_fmp4_init_filename", "init.mp4");
        }
        PackageFormat::Dash => {
            options.set("seg_duration", &seconds);
            options.set("use_template", "1");
            options.set("use_timeline", "1");
            options.set("dash_segment_type", "mp4");
            options.set("init_seg_name", "init-$RepresentationID$.m4s");
            options.set(
                "media_seg_name",
                "chunk-$RepresentationID$-$Number%05d$.m4s",
            );
            options.set("adaptation_sets", &adaptation_sets(shapes, tracks));
        }
    }
    options
}

/// A rendition's picture as DASH groups it: size in pixels and pixel aspect (`0/1` unknown,
/// read as square).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PictureShape {
    width: u32,
    height: u32,
    sar: (i32, i32),
}

impl PictureShape {
    /// The displayed aspect ratio, reduced (`width × sar : height`).
    fn displayed_aspect(&self) -> (u64, u64) {
        let (num, den) = if self.sar.0 > 0 && self.sar.1 > 0 {
            (self.sar.0 as u64, self.sar.1 as u64)
        } else {
            (1, 1)
        };
        let (width, height) = (
            u64::from(self.width.max(1)) * num,
            u64::from(self.height.max(1)) * den,
        );
        let (mut a, mut b) = (width, height);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        (width / a, height / a)
    }
}

/// The DASH adaptation sets: the video renditions, one set per displayed aspect ratio (the
/// dash muxer refuses a set whose pictures differ in it; rungs scaled from one source share
/// it, their pixel aspect making up for widths rounded to even numbers), then a set per audio
/// track (streams after the video), each with its language.
fn adaptation_sets(shapes: &[PictureShape], tracks: usize) -> String {
    let mut groups: Vec<((u64, u64), Vec<usize>)> = Vec::new();
    for (stream, shape) in shapes.iter().enumerate() {
        let ratio = shape.displayed_aspect();
        match groups.iter_mut().find(|(r, _)| *r == ratio) {
            Some((_, streams)) => streams.push(stream),
            None => groups.push((ratio, vec![stream])),
        }
    }
    let mut sets: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(id, (_, streams))| {
            let list: Vec<String> = streams.iter().map(usize::to_string).collect();
            format!("id={id},streams={}", list.join(","))
        })
        .collect();
    // Each audio track its own set, so each carries its own language.
    for track in 0..tracks {
        sets.push(format!(
            "id={},streams={}",
            groups.len() + track,
            shapes.len() + track
        ));
    }
    sets.join(" ")
}

/// The master playlist: the audio group (each track with its language, the first the
/// default), then one variant per rendition with its measured bitrates (the video's plus the
/// costliest audio track's), size, frame rate and codecs.
fn master_playlist(
    info: &MediaInfo,
    renditions: &[PackagedRendition],
    audio_codecs: &[String],
    audio_rates: &[(u64, u64)],
) -> String {
    let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let mut names: Vec<String> = Vec::new();
    for (track, audio) in info.audio.iter().enumerate().take(audio_codecs.len()) {
        let language = audio.language().unwrap_or("und");
        let base = audio
            .metadata
            .get("title")
            .cloned()
            .unwrap_or_else(|| format!("{language} {}ch", audio.channels));
        let mut name = base.replace('"', "'");
        if names.contains(&name) {
            name = format!("{name} ({})", track + 1);
        }
        names.push(name.clone());
        let _ = writeln!(
            text,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"{name}\",LANGUAGE=\"{language}\",\
             DEFAULT={},AUTOSELECT=YES,CHANNELS=\"{}\",URI=\"{}/index.m3u8\"",
            if track == 0 { "YES" } else { "NO" },
            audio.channels,
            audio_name(track)
        );
    }
    let (audio_peak, audio_average) =
        audio_rates.iter().fold((0, 0), |(peak, average), &(p, a)| {
            (peak.max(p), average.max(a))
        });
    let mut distinct_audio: Vec<&str> = Vec::new();
    for codec in audio_codecs {
        if !distinct_audio.contains(&codec.as_str()) {
            distinct_audio.push(codec);
        }
    }
    let rate = info.video.frame_rate;
    for (rung, rendition) in renditions.iter().enumerate() {
        let codecs = std::iter::once(rendition.codecs.as_str())
            .chain(distinct_audio.iter().copied())
            .collect::<Vec<_>>()
            .join(",");
        let _ = write!(
            text,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{codecs}\"",
            rendition.peak_bitrate + audio_peak,
            rendition.average_bitrate + audio_average,
            rendition.width,
            rendition.height,
        );
        if rate.num > 0 && rate.den > 0 {
            let _ = write!(
                text,
                ",FRAME-RATE={:.3}",
                f64::from(rate.num) / f64::from(rate.den)
            );
        }
        if !audio_codecs.is_empty() {
            text.push_str(",AUDIO=\"audio\"");
        }
        let _ = writeln!(text, "\n{}/index.m3u8", video_name(rung));
    }
    text
}

/// Each fragment of a media playlist: (seconds, bytes).
fn hls_fragments(playlist: &Path) -> Result<Vec<(f64, u64)>, MediaError> {
    let text = std::fs::read_to_string(playlist).map_err(MediaError::io(playlist))?;
    let dir = playlist.parent().unwrap_or(Path::new("."));
    let mut fragments = Vec::new();
    let mut duration = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            duration = rest.split(',').next().and_then(|d| d.parse::<f64>().ok());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let file = dir.join(line.trim());
            let bytes = std::fs::metadata(&file)
                .map_err(MediaError::io(&file))?
                .len();
            fragments.push((duration.take().unwrap_or(0.0), bytes));
        }
    }
    Ok(fragments)
}

/// The DASH fragments of representation `rung` (bytes only; durations from the manifest's
/// timeline are not read: the average over the whole stream is used for each).
fn dash_fragments(dir: &Path, rung: usize) -> Result<Vec<(f64, u64)>, MediaError> {
    let prefix = format!("chunk-{rung}-");
    let mut sizes = Vec::new();
    for entry in std::fs::read_dir(dir)
        .map_err(MediaError::io(dir))?
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            sizes.push(entry.metadata().map_or(0, |meta| meta.len()));
        }
    }
    Ok(sizes.into_iter().map(|bytes| (0.0, bytes)).collect())
}

fn rendition_report(
    playlist: PathBuf,
    width: u32,
    height: u32,
    codecs: String,
    fragments: &[(f64, u64)],
) -> PackagedRendition {
    let bytes: u64 = fragments.iter().map(|(_, bytes)| bytes).sum();
    let seconds: f64 = fragments.iter().map(|(seconds, _)| seconds).sum();
    let rate = |bytes: u64, seconds: f64| {
        if seconds > 0.0 {
            (bytes as f64 * 8.0 / seconds).ceil() as u64
        } else {
            0
        }
    };
    PackagedRendition {
        playlist,
        width,
        height,
        codecs,
        peak_bitrate: fragments
            .iter()
            .map(|&(seconds, bytes)| rate(bytes, seconds))
            .max()
            .unwrap_or(0),
        average_bitrate: rate(bytes, seconds),
        fragments: fragments.len() as u64,
        bytes,
    }
}

/// Bytes of each track of an extracted audio file.
fn audio_track_bytes(path: &Path) -> Result<Vec<u64>, MediaError> {
    let mut input = util::open_input(path)?;
    let mut bytes = vec![0u64; input.streams().count()];
    while let Some(packet) = util::read_packet(path, &mut input)? {
        if let Some(total) = bytes.get_mut(packet.stream()) {
            *total += packet.size() as u64;
        }
    }
    Ok(bytes)
}

/// The last added stream's bit rate (the DASH manifest's `bandwidth`), from its bytes.
fn set_bit_rate(muxer: &mut ffmpeg::format::context::Output, bytes: u64, seconds: f64) {
    let last = muxer.nb_streams() as usize - 1;
    set_stream_bit_rate(muxer, last, bytes, seconds);
}

fn set_stream_bit_rate(
    muxer: &mut ffmpeg::format::context::Output,
    stream: usize,
    bytes: u64,
    seconds: f64,
) {
    if seconds <= 0.0 {
        return;
    }
    if let Some(mut stream) = muxer.stream_mut(stream) {
        // SAFETY: the stream's codecpar is owned by the muxer and alive here.
        unsafe {
            (*(*stream.as_mut_ptr()).codecpar).bit_rate = (bytes as f64 * 8.0 / seconds) as i64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptation_sets_group_renditions_by_displayed_aspect_ratio() {
        let shape = |width, height, sar| PictureShape { width, height, sar };
        // 852x480 at 640:639 shows 16:9 as 1280x720 does: one set; square 852x480 does not.
        assert_eq!(
            adaptation_sets(
                &[
                    shape(1280, 720, (1, 1)),
                    shape(852, 480, (640, 639)),
                    shape(640, 360, (0, 1))
                ],
                2
            ),
            "id=0,streams=0,1,2 id=1,streams=3 id=2,streams=4"
        );
        assert_eq!(
            adaptation_sets(&[shape(1280, 720, (1, 1)), shape(852, 480, (1, 1))], 0),
            "id=0,streams=0 id=1,streams=1"
        );
        assert_eq!(
            adaptation_sets(&[shape(320, 180, (1, 1))], 0),
            "id=0,streams=0"
        );
    }
}
