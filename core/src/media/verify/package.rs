//! Verify an HLS or DASH package against its source: every video rendition judged as a file
//! output is (frames, timestamps, duration, levels, quality), with the package's audio
//! renditions as its audio (tracks, codecs, packets, A/V offset).
//!
//! HLS: the master playlist's variants, each read by FFmpeg's HLS demuxer, with the audio
//! tracks the demuxer finds in the master. DASH packages are not read here yet.

use super::{verify_probed, VerifyError, VerifyOptions, VerifyReport};
use crate::media::package::PackageFormat;
use crate::media::probe::{probe, MediaInfo};
use crate::media::MediaError;
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
        return Err(MediaError::Unsupported {
            path: manifest.to_owned(),
            reason: "verify reads HLS packages only so far; check a DASH package's \
                     representations with ffprobe"
                .into(),
        }
        .into());
    }
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
    let audio_tracks = probe(manifest)?.audio;
    let mut verdicts = Vec::with_capacity(videos.len());
    for uri in videos {
        let playlist = dir.join(&uri);
        let mut output: MediaInfo = probe(&playlist)?;
        output.audio = audio_tracks.clone();
        verdicts.push(RenditionVerified {
            rendition: playlist,
            report: verify_probed(&source_info, &output, options, false)?,
        });
    }
    Ok(verdicts)
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
}
