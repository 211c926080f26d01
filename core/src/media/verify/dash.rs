//! A DASH manifest as verify reads it: each representation's files (its initialization segment,
//! then its media segments in order, with their durations) from the `SegmentTemplate` and
//! `SegmentTimeline` that FFmpeg's dash muxer writes, and the same segments listed as an HLS
//! master playlist with a media playlist per representation, which FFmpeg's HLS demuxer reads
//! (its DASH demuxer cannot open local files through a custom I/O), so a DASH package is judged
//! exactly as an HLS one is.

use std::path::{Path, PathBuf};

/// One representation of the manifest.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Representation {
    pub id: String,
    /// A video representation (`contentType`/`mimeType` video), else audio.
    pub video: bool,
    /// The adaptation set's `lang`.
    pub language: Option<String>,
    /// The initialization segment first, then the media segments in order, under the
    /// manifest's directory.
    pub files: Vec<PathBuf>,
    /// Each media segment's duration in seconds (the timeline's `d` over the `timescale`).
    pub durations: Vec<f64>,
}

/// The video and audio representations of `text` (an MPD), their files under `dir`, in
/// manifest order. An error names what the manifest does that this reader does not follow
/// (several periods, segment lists, templates without a timeline, `$Time$` names, …).
pub(super) fn representations(text: &str, dir: &Path) -> Result<Vec<Representation>, String> {
    let mut found = Vec::new();
    let mut set: Option<(bool, Option<String>)> = None;
    let mut open: Option<OpenRepresentation> = None;
    let mut set_template: Option<Template> = None;
    let mut periods = 0;
    for tag in text.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default().trim();
        let name = tag
            .split(|c: char| c.is_whitespace() || c == '/')
            .find(|word| !word.is_empty())
            .unwrap_or_default();
        let closing = tag.starts_with('/');
        match (name, closing) {
            ("Period", false) => {
                periods += 1;
                if periods > 1 {
                    return Err("more than one Period".into());
                }
            }
            ("AdaptationSet", false) => {
                let kind = attribute(tag, "contentType").or_else(|| attribute(tag, "mimeType"));
                let video = kind.is_some_and(|kind| kind.starts_with("video"));
                set = Some((video, attribute(tag, "lang")));
                set_template = None;
            }
            ("AdaptationSet", true) => set = None,
            ("Representation", false) => {
                let id = attribute(tag, "id").ok_or("a Representation without an id")?;
                let mime = attribute(tag, "mimeType").unwrap_or_default();
                let (set_video, language) = set.clone().unwrap_or((false, None));
                open = Some(OpenRepresentation {
                    id,
                    video: set_video || mime.starts_with("video"),
                    language,
                    template: set_template.clone(),
                });
            }
            ("SegmentTemplate", false) => {
                let template = Template {
                    initialization: attribute(tag, "initialization")
                        .ok_or("a SegmentTemplate without an initialization")?,
                    media: attribute(tag, "media").ok_or("a SegmentTemplate without media")?,
                    start_number: attribute(tag, "startNumber")
                        .map_or(Ok(1), |number| number.parse())
                        .map_err(|_| "a startNumber that is not a number")?,
                    timescale: attribute(tag, "timescale")
                        .map_or(Ok(1), |scale| scale.parse())
                        .map_err(|_| "a timescale that is not a number")?,
                    durations: Vec::new(),
                };
                match open.as_mut() {
                    Some(representation) => representation.template = Some(template),
                    None => set_template = Some(template),
                }
            }
            ("S", false) => {
                let repeat: i64 = attribute(tag, "r")
                    .map_or(Ok(0), |r| r.parse())
                    .map_err(|_| "an S element whose r is not a number")?;
                if repeat < 0 {
                    return Err("an open-ended SegmentTimeline (r < 0)".into());
                }
                let template = match open.as_mut() {
                    Some(representation) => representation.template.as_mut(),
                    None => set_template.as_mut(),
                };
                let template = template.ok_or("a SegmentTimeline outside a SegmentTemplate")?;
                let duration: u64 = attribute(tag, "d")
                    .and_then(|d| d.parse().ok())
                    .ok_or("an S element without a duration d")?;
                let seconds = duration as f64 / template.timescale.max(1) as f64;
                template
                    .durations
                    .extend(std::iter::repeat_n(seconds, 1 + repeat as usize));
            }
            ("SegmentList" | "SegmentBase" | "BaseURL", false) => {
                return Err(format!("a {name} (only SegmentTemplate is read)"));
            }
            ("Representation", true) => {
                let representation = open.take().ok_or("a Representation closed twice")?;
                found.push(representation.finish(dir)?);
            }
            _ => {}
        }
    }
    Ok(found)
}

/// Writes into `dir` a media playlist per representation (absolute paths to its segments) and
/// a master playlist naming them, the audio as one group in manifest order, the first the
/// default (DASH names no default track; a player takes the first set). Returns the master.
pub(super) fn write_as_hls(
    representations: &[Representation],
    dir: &Path,
) -> std::io::Result<PathBuf> {
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut master = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    let mut variants = String::new();
    let mut first_audio = true;
    for representation in representations {
        let target = representation
            .durations
            .iter()
            .fold(1.0_f64, |longest, d| longest.max(d.ceil()));
        let mut playlist = format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-PLAYLIST-TYPE:VOD\n\
             #EXT-X-MAP:URI=\"{}\"\n",
            absolute(&representation.files[0]).display()
        );
        for (file, seconds) in representation.files[1..]
            .iter()
            .zip(&representation.durations)
        {
            playlist.push_str(&format!(
                "#EXTINF:{seconds:.6},\n{}\n",
                absolute(file).display()
            ));
        }
        playlist.push_str("#EXT-X-ENDLIST\n");
        let name = format!("representation-{}.m3u8", representation.id);
        std::fs::write(dir.join(&name), playlist)?;
        if representation.video {
            variants.push_str(&format!(
                "#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"audio\"\n{name}\n"
            ));
        } else {
            master.push_str(&format!(
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"{}\",LANGUAGE=\"{}\",DEFAULT={},URI=\"{name}\"\n",
                representation.id,
                representation.language.as_deref().unwrap_or("und"),
                if first_audio { "YES" } else { "NO" },
            ));
            first_audio = false;
        }
    }
    master.push_str(&variants);
    let path = dir.join("master.m3u8");
    std::fs::write(&path, master)?;
    Ok(path)
}

/// A representation being read.
struct OpenRepresentation {
    id: String,
    video: bool,
    language: Option<String>,
    template: Option<Template>,
}

impl OpenRepresentation {
    fn finish(self, dir: &Path) -> Result<Representation, String> {
        let template = self
            .template
            .ok_or_else(|| format!("representation {} has no SegmentTemplate", self.id))?;
        if template.durations.is_empty() {
            return Err(format!(
                "representation {} has no SegmentTimeline (segments cannot be counted)",
                self.id
            ));
        }
        let mut files = vec![dir.join(expand(&template.initialization, &self.id, None)?)];
        let segments = template.durations.len() as u64;
        for number in template.start_number..template.start_number + segments {
            files.push(dir.join(expand(&template.media, &self.id, Some(number))?));
        }
        Ok(Representation {
            id: self.id,
            video: self.video,
            language: self.language,
            files,
            durations: template.durations,
        })
    }
}

/// A `SegmentTemplate` and the segments its timeline lists.
#[derive(Clone, Debug)]
struct Template {
    initialization: String,
    media: String,
    start_number: u64,
    /// Ticks per second of the timeline.
    timescale: u64,
    /// The timeline's segment durations, in seconds.
    durations: Vec<f64>,
}

/// A template name with `$RepresentationID$`, `$Number$` / `$Number%05d$` and `$$` filled in.
fn expand(template: &str, id: &str, number: Option<u64>) -> Result<String, String> {
    let mut out = String::new();
    let mut parts = template.split('$');
    out.push_str(parts.next().unwrap_or_default());
    let mut inside = true;
    for part in parts {
        if inside {
            match part {
                "" => out.push('$'),
                "RepresentationID" => out.push_str(id),
                number_name if number_name.starts_with("Number") => {
                    let number = number.ok_or("$Number$ in an initialization name")?;
                    let width = match number_name.strip_prefix("Number") {
                        Some("") => 0,
                        Some(format) => format
                            .strip_prefix("%0")
                            .and_then(|f| f.strip_suffix('d'))
                            .and_then(|w| w.parse().ok())
                            .ok_or_else(|| format!("the name format ${number_name}$"))?,
                        None => 0,
                    };
                    out.push_str(&format!("{number:0width$}"));
                }
                other => return Err(format!("the template identifier ${other}$")),
            }
        } else {
            out.push_str(part);
        }
        inside = !inside;
    }
    Ok(out)
}

/// A quoted attribute of a tag (its name preceded by white space).
fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let mut from = 0;
    while let Some(found) = tag[from..].find(&key) {
        let at = from + found;
        if tag[..at].ends_with(char::is_whitespace) {
            let start = at + key.len();
            let end = tag[start..].find('"')? + start;
            return Some(tag[start..end].to_owned());
        }
        from = at + key.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MPD: &str = r#"<?xml version="1.0"?>
<MPD type="static"><Period id="0" start="PT0.0S">
 <AdaptationSet id="0" contentType="video" par="16:9">
  <Representation id="0" mimeType="video/mp4" width="320" height="180">
   <SegmentTemplate timescale="16000" initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
    <SegmentTimeline><S t="0" d="64000" r="1" /><S d="15984" /></SegmentTimeline>
   </SegmentTemplate>
  </Representation>
 </AdaptationSet>
 <AdaptationSet id="1" contentType="audio" lang="fra">
  <Representation id="a" mimeType="audio/mp4">
   <SegmentTemplate initialization="i$$-$RepresentationID$.mp4" media="$RepresentationID$/$Number$.m4s" startNumber="3">
    <SegmentTimeline><S t="0" d="1" /></SegmentTimeline>
   </SegmentTemplate>
  </Representation>
 </AdaptationSet>
</Period></MPD>"#;

    #[test]
    fn representations_list_their_files_in_order() {
        let found = representations(MPD, Path::new("d")).expect("read");
        assert_eq!(found.len(), 2);
        assert!(found[0].video && !found[1].video);
        assert_eq!(found[1].language.as_deref(), Some("fra"));
        let names = |r: &Representation| -> Vec<String> {
            r.files.iter().map(|f| f.display().to_string()).collect()
        };
        assert_eq!(
            names(&found[0]),
            [
                "d/init-0.m4s",
                "d/chunk-0-00001.m4s",
                "d/chunk-0-00002.m4s",
                "d/chunk-0-00003.m4s"
            ]
        );
        assert_eq!(names(&found[1]), ["d/i$-a.mp4", "d/a/3.m4s"]);
        assert_eq!(found[0].durations, [4.0, 4.0, 0.999]);
    }

    #[test]
    fn what_is_not_followed_is_named() {
        let time = MPD.replace("$Number%05d$", "$Time$");
        assert!(representations(&time, Path::new("d"))
            .expect_err("refused")
            .contains("$Time$"));
        let list = MPD.replace("<SegmentTimeline>", "<SegmentList>");
        assert!(representations(&list, Path::new("d"))
            .expect_err("refused")
            .contains("SegmentList"));
    }
}
