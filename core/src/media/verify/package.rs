//! Verify an HLS or DASH package against its source: every video rendition judged as a file
//! output is (frames, timestamps, duration, levels, quality), with the package's audio
//! renditions as its audio (tracks, codecs, packets, A/V offset).
//!
//! HLS: the master playlist's variants, each read by FFmpeg's HLS demuxer, with the audio
//! tracks the demuxer finds in the master, as a player reads them (the master's default track,
//! AAC priming an fMP4 cannot signal).
//!
//! DASH: each representation of the manifest (`dash.rs`) joined into one fMP4 and judged so.

use super::{dash, verify_probed, VerifyError, VerifyOptions, VerifyReport};
use crate::media::package::PackageFormat;
use crate::media::probe::{probe, AudioTrack, MediaInfo};
use crate::media::MediaError;
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One rendition's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenditionVerified {
    /// Its media playlist.
    pub rendition: PathBuf,
    pub report: VerifyReport,
}

/// Verifies every video rendition of the package whose entry point is `manifest` (`.m3u8` or
/// `.mpd`) against `source`. An error when the package names no video rendition.
pub fn verify_package(
    source: &Path,
    manifest: &Path,
    options: &VerifyOptions,
) -> Result<Vec<RenditionVerified>, VerifyError> {
    crate::media::util::init();
    let source_info = probe(source)?;
    let format = PackageFormat::from_path(manifest).ok_or_else(|| MediaError::Unsupported {
        path: manifest.to_owned(),
        reason: "not an HLS (.m3u8) or DASH (.mpd) manifest".into(),
    })?;
    if format == PackageFormat::Dash {
        return verify_dash(&source_info, manifest, options);
    }
    verify_hls(&source_info, manifest, options)
}

/// An HLS package: each variant of the master playlist `manifest`, with the audio group.
fn verify_hls(
    source_info: &MediaInfo,
    manifest: &Path,
    options: &VerifyOptions,
) -> Result<Vec<RenditionVerified>, VerifyError> {
    let dir = manifest.parent().unwrap_or(Path::new(".")).to_owned();
    let text = std::fs::read_to_string(manifest).map_err(MediaError::io(manifest))?;
    let (videos, _) = hls_renditions(&text);
    if videos.is_empty() {
        return Err(MediaError::Unsupported {
            path: manifest.to_owned(),
            reason: "the master playlist names no video rendition".into(),
        }
        .into());
    }
    // FFmpeg's HLS demuxer opens the master with every audio rendition as a stream: the
    // package's audio tracks, in the order of its #EXT-X-MEDIA lines.
    let mut audio_tracks = probe(manifest)?.audio;
    for (track, media) in audio_tracks.iter_mut().zip(audio_media(&text)) {
        as_players_read(track, &media);
    }
    let mut verdicts = Vec::with_capacity(videos.len());
    for uri in videos {
        let playlist = dir.join(&uri);
        let mut output: MediaInfo = probe(&playlist)?;
        output.size_bytes = rendition_bytes(&playlist);
        output.audio = audio_tracks.clone();
        verdicts.push(RenditionVerified {
            rendition: playlist,
            report: verify_probed(source_info, &output, options, false)?,
        });
    }
    Ok(verdicts)
}

/// A DASH package: its representations' segments listed as an HLS package (see
/// [`dash::write_as_hls`], in a private temporary directory) and judged as one.
fn verify_dash(
    source_info: &MediaInfo,
    manifest: &Path,
    options: &VerifyOptions,
) -> Result<Vec<RenditionVerified>, VerifyError> {
    let dir = manifest.parent().unwrap_or(Path::new(".")).to_owned();
    let text = std::fs::read_to_string(manifest).map_err(MediaError::io(manifest))?;
    let representations =
        dash::representations(&text, &dir).map_err(|reason| MediaError::Unsupported {
            path: manifest.to_owned(),
            reason: format!("this DASH manifest cannot be verified: {reason}"),
        })?;
    for file in representations.iter().flat_map(|r| &r.files) {
        if !file.is_file() {
            return Err(MediaError::Unsupported {
                path: manifest.to_owned(),
                reason: format!("it names {}, which is missing", file.display()),
            }
            .into());
        }
    }
    let listing = tempfile::tempdir().map_err(MediaError::io(&dir))?;
    let master =
        dash::write_as_hls(&representations, listing.path()).map_err(MediaError::io(&dir))?;
    let mut verdicts = verify_hls(source_info, &master, options)?;
    for (verdict, representation) in verdicts
        .iter_mut()
        .zip(representations.iter().filter(|r| r.video))
    {
        verdict.rendition = PathBuf::from(format!(
            "{} representation {}",
            manifest.display(),
            representation.id
        ));
    }
    Ok(verdicts)
}

/// The bytes of a media playlist's segments and initialization section, as found on disk
/// (the playlist's own size when it names none).
fn rendition_bytes(playlist: &Path) -> u64 {
    let text = std::fs::read_to_string(playlist).unwrap_or_default();
    let dir = playlist.parent().unwrap_or(Path::new("."));
    let files = text.lines().map(str::trim).filter_map(|line| {
        if line.starts_with("#EXT-X-MAP:") {
            attribute(line, "URI")
        } else if !line.is_empty() && !line.starts_with('#') {
            Some(line.to_owned())
        } else {
            None
        }
    });
    let bytes: u64 = files
        .map(|name| std::fs::metadata(dir.join(name)).map_or(0, |meta| meta.len()))
        .sum();
    if bytes > 0 {
        bytes
    } else {
        std::fs::metadata(playlist).map_or(0, |meta| meta.len())
    }
}

/// The variant URIs (lines after `#EXT-X-STREAM-INF`) and audio rendition URIs of a master
/// playlist, in order.
fn hls_renditions(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut videos, mut audios) = (Vec::new(), Vec::new());
    let mut next_is_variant = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("#EXT-X-STREAM-INF") {
            next_is_variant = true;
        } else if line.starts_with("#EXT-X-MEDIA:") && line.contains("TYPE=AUDIO") {
            if let Some(uri) = attribute(line, "URI") {
                audios.push(uri);
            }
        } else if next_is_variant && !line.is_empty() && !line.starts_with('#') {
            videos.push(line.to_owned());
            next_is_variant = false;
        }
    }
    (videos, audios)
}

/// What an `#EXT-X-MEDIA` audio line says of its track.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AudioMedia {
    /// `DEFAULT=YES`.
    default: bool,
}

/// The master playlist's audio renditions, in order.
fn audio_media(text: &str) -> Vec<AudioMedia> {
    text.lines()
        .map(str::trim)
        .filter(|line| line.starts_with("#EXT-X-MEDIA:") && line.contains("TYPE=AUDIO"))
        .map(|line| AudioMedia {
            default: line
                .split(',')
                .any(|attribute| attribute.trim() == "DEFAULT=YES"),
        })
        .collect()
}

/// A package's audio track as a player reads it. The default track is the master playlist's
/// `DEFAULT=YES` (FFmpeg's HLS demuxer marks every track default, each being the only track
/// of its fMP4). An AAC track whose fMP4 signals no priming is primed as AAC encoders prime
/// (1024 samples, what FFmpeg's `aac` encoder writes for a re-encoded track): an HLS fMP4
/// carries no edit list skip, so a player plays those samples and the audible start follows.
fn as_players_read(track: &mut AudioTrack, media: &AudioMedia) {
    let default = ffmpeg::ffi::AV_DISPOSITION_DEFAULT;
    track.disposition = if media.default {
        track.disposition | default
    } else {
        track.disposition & !default
    };
    if track.codec == "aac" && track.priming_samples == 0 {
        track.priming_samples = AAC_PRIMING_SAMPLES;
    }
}

/// The priming of an AAC-LC encoder, in samples.
const AAC_PRIMING_SAMPLES: u32 = 1024;

/// A quoted attribute of a playlist tag.
fn attribute(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_playlist_names_its_renditions() {
        let master = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"en\",URI=\"a0/index.m3u8\"\n\
                      #EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=2x2\nv0/index.m3u8\n\
                      #EXT-X-STREAM-INF:BANDWIDTH=1\nv1/index.m3u8\n";
        assert_eq!(
            hls_renditions(master),
            (
                vec!["v0/index.m3u8".to_owned(), "v1/index.m3u8".to_owned()],
                vec!["a0/index.m3u8".to_owned()]
            )
        );
    }

    #[test]
    fn the_default_audio_track_is_the_masters() {
        let master = "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"a, b\",DEFAULT=YES,URI=\"a0/i.m3u8\"\n\
                      #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",DEFAULT=NO,URI=\"a1/i.m3u8\"\n\
                      #EXT-X-MEDIA:TYPE=SUBTITLES,DEFAULT=YES,URI=\"s/i.m3u8\"\n";
        let defaults: Vec<bool> = audio_media(master).iter().map(|m| m.default).collect();
        assert_eq!(defaults, [true, false]);
    }
}
