//! HLS and DASH straight from the segments: every rendition's segment files and the job's audio
//! muxed once, without re-encoding and without an intermediate file, into fragmented MP4 (CMAF:
//! an init segment and media fragments per stream) by FFmpeg's own `hls` muxer
//! (`hls_segment_type fmp4`, one media playlist per rendition and per audio track) or `dash`
//! muxer (one AdaptationSet for the video renditions, one for the audio). The HLS master
//! playlist is written here (FFmpeg 5.1's lacks the video's CODECS): BANDWIDTH (the peak
//! fragment bitrate, measured from the fragments written), AVERAGE-BANDWIDTH, RESOLUTION,
//! CODECS, and the audio as its own rendition group (`#EXT-X-MEDIA:TYPE=AUDIO`, each track with
//! its language).
//!
//! Fragments align across renditions: the segments were encoded with keyframes on one grid
//! ([`crate::renditions::KeyframeGrid`]) and no scene-cut keyframes, so the muxer cuts each
//! rendition at the same frames. Everything is written into a private directory beside the
//! manifest and moved into place when complete, the manifest last.

mod codecs;
mod mux;

pub use mux::{PackageStreams, PackageVideo};

use super::MediaError;
use crate::settings::{Container, VideoCodec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The packaging an output's name asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageFormat {
    /// `*.m3u8`: an HLS master playlist.
    Hls,
    /// `*.mpd`: a DASH manifest.
    Dash,
}

impl PackageFormat {
    /// By the output's extension (`master.m3u8`, `manifest.mpd`); `None` for a single file.
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_string_lossy().to_ascii_lowercase();
        match extension.as_str() {
            "m3u8" => Some(Self::Hls),
            "mpd" => Some(Self::Dash),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Hls => "HLS",
            Self::Dash => "DASH",
        }
    }

    /// By name, as a job's `packaging` setting gives it (`hls`, `dash`, any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "hls" => Some(Self::Hls),
            "dash" => Some(Self::Dash),
            _ => None,
        }
    }

    /// The manifest's file name where a package gets its name from its directory (an AWS
    /// output prefix): `master.m3u8` or `manifest.mpd`.
    pub fn manifest_name(self) -> &'static str {
        match self {
            Self::Hls => "master.m3u8",
            Self::Dash => "manifest.mpd",
        }
    }

    /// Whether a package can be made of `codec` video asked for in `container`: fragmented MP4
    /// (the container `mp4`) holding H.264 or H.265. The error says what was expected.
    pub fn check(self, container: Container, codec: VideoCodec) -> Result<(), String> {
        if container != Container::Mp4 {
            return Err(format!(
                "{} packages are fragmented MP4: the container must be mp4, not {}",
                self.name(),
                container.extension()
            ));
        }
        if !matches!(codec, VideoCodec::H264 | VideoCodec::H265) {
            return Err(format!(
                "HLS and DASH packages here hold h264 or h265 video, not {codec}"
            ));
        }
        Ok(())
    }
}

/// One rendition of a package as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackagedRendition {
    /// Its media playlist (HLS) or the manifest (DASH).
    pub playlist: PathBuf,
    pub width: u32,
    pub height: u32,
    /// RFC 6381 codec string (`avc1.64001f`).
    pub codecs: String,
    /// Peak and average bitrate of its fragments, bits per second.
    pub peak_bitrate: u64,
    pub average_bitrate: u64,
    pub fragments: u64,
    pub bytes: u64,
}

/// What packaging wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackageReport {
    pub format: PackageFormat,
    pub manifest: PathBuf,
    /// Video renditions, in the order of the job's rungs (tallest first).
    pub renditions: Vec<PackagedRendition>,
    pub video_packets: u64,
    pub audio_packets: u64,
    /// Every file written (manifest, playlists, init segments, fragments) and their bytes.
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Writes the package `format` for `streams` with `manifest` as its entry point (its
/// directory is created if missing; the other files go beside it). Fragments are cut at the
/// first keyframe at or after every `fragment_seconds` of the video.
pub fn package(
    streams: &PackageStreams<'_>,
    format: PackageFormat,
    manifest: &Path,
    fragment_seconds: f64,
) -> Result<PackageReport, MediaError> {
    super::util::init();
    let started = std::time::Instant::now();
    let dir = match manifest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(MediaError::io(&dir))?;
    let work = tempfile::Builder::new()
        .prefix(".treemux-package-")
        .tempdir_in(&dir)
        .map_err(MediaError::io(&dir))?;
    let name = manifest
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("master.m3u8"));
    let written = mux::write(streams, format, work.path(), &name, fragment_seconds)?;
    let mut report = PackageReport {
        format,
        manifest: manifest.to_owned(),
        renditions: written.renditions,
        video_packets: written.video_packets,
        audio_packets: written.audio_packets,
        files: 0,
        bytes: 0,
        seconds: 0.0,
    };
    // Into place, the manifest last: a player never finds it before what it names.
    let mut entries = Vec::new();
    collect_files(work.path(), &mut entries).map_err(MediaError::io(work.path()))?;
    entries.sort_by_key(|path| path.file_name() == Some(name.as_os_str()));
    for path in entries {
        let relative = path.strip_prefix(work.path()).unwrap_or(&path).to_owned();
        let target = dir.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(MediaError::io(parent))?;
        }
        report.bytes += std::fs::metadata(&path)
            .map_err(MediaError::io(&path))?
            .len();
        report.files += 1;
        std::fs::rename(&path, &target).map_err(MediaError::io(&target))?;
    }
    for rendition in &mut report.renditions {
        rendition.playlist = dir.join(&rendition.playlist);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn collect_files(dir: &Path, into: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, into)?;
        } else {
            into.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_follows_the_name() {
        assert_eq!(
            PackageFormat::from_path(Path::new("out/master.m3u8")),
            Some(PackageFormat::Hls)
        );
        assert_eq!(
            PackageFormat::from_path(Path::new("out/Manifest.MPD")),
            Some(PackageFormat::Dash)
        );
        assert_eq!(PackageFormat::from_path(Path::new("out.mp4")), None);
        assert_eq!(PackageFormat::parse(" HLS "), Some(PackageFormat::Hls));
        assert_eq!(PackageFormat::parse("dash"), Some(PackageFormat::Dash));
        assert_eq!(PackageFormat::parse("smooth"), None);
        let hls = PackageFormat::Hls;
        assert!(hls.check(Container::Mp4, VideoCodec::H265).is_ok());
        assert!(hls
            .check(Container::Matroska, VideoCodec::H264)
            .is_err_and(|e| e.contains("must be mp4, not mkv")));
        assert!(hls
            .check(Container::Mp4, VideoCodec::Av1)
            .is_err_and(|e| e.contains("not av1")));
        assert_eq!(PackageFormat::from_path(Path::new("m3u8")), None);
    }
}
