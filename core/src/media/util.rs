//! Small helpers shared by the media steps.

use super::MediaError;
use crate::atomic_file::AtomicFile;
use crate::plan::TimeBase;
use ffmpeg_next as ffmpeg;
use std::path::Path;
use std::sync::Once;

/// Initialises FFmpeg once per process and silences its own logging: treemux reports errors
/// itself, one line each. Set `TREEMUX_FFMPEG_LOG=debug` (or `info`, `warning`, `error`) to see
/// FFmpeg's messages.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Failure here means libavformat could not register its network layer, which treemux
        // never uses; decoding still works, so it is safe to go on.
        let _ = ffmpeg::init();
        use ffmpeg::util::log::Level;
        let level = match std::env::var("TREEMUX_FFMPEG_LOG")
            .unwrap_or_default()
            .as_str()
        {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warning" => Level::Warning,
            "error" => Level::Error,
            _ => Level::Quiet,
        };
        ffmpeg::util::log::set_level(level);
        if level == Level::Quiet {
            install_error_capture();
        }
    });
}

thread_local! {
    /// FFmpeg's last error-level log message on this thread. FFmpeg often says why it refused a
    /// file only in its log and returns a generic code (a Y4M header declaring 60000x60000 comes
    /// back as "Device or resource busy" after logging "Picture size 60000x60000 is invalid"),
    /// so errors read it to name the real cause. Thread-local because the log callback is the
    /// one process-wide hook FFmpeg offers and messages must reach the thread that failed.
    static LAST_FFMPEG_ERROR: std::cell::RefCell<Option<String>> =
        const { std::cell::RefCell::new(None) };
}

/// Forgets this thread's last FFmpeg error message; call before the FFmpeg call whose failure
/// [`take_ffmpeg_error`] should explain.
pub(crate) fn clear_ffmpeg_error() {
    LAST_FFMPEG_ERROR.with(|last| last.borrow_mut().take());
}

/// The last error FFmpeg logged on this thread since [`clear_ffmpeg_error`], if any.
pub(crate) fn take_ffmpeg_error() -> Option<String> {
    LAST_FFMPEG_ERROR.with(|last| last.borrow_mut().take())
}

/// Replaces FFmpeg's log output (silenced anyway) with [`LAST_FFMPEG_ERROR`]. Only where the
/// bindings' `va_list` is the x86-64 one, the only target treemux ships (Lambda x86_64); elsewhere
/// errors keep FFmpeg's return code alone.
#[cfg(target_arch = "x86_64")]
fn install_error_capture() {
    use ffmpeg::ffi;
    unsafe extern "C" fn capture(
        context: *mut libc::c_void,
        level: libc::c_int,
        format: *const libc::c_char,
        arguments: *mut ffi::__va_list_tag,
    ) {
        if level > ffi::AV_LOG_ERROR {
            return;
        }
        let mut line = [0 as libc::c_char; 512];
        // No "[context @ address]" prefix: the message alone is what users can act on.
        let mut print_prefix: libc::c_int = 0;
        // SAFETY: FFmpeg passes a valid format and argument list for this one call, and the
        // buffer's size is given; av_log_format_line2 always NUL-terminates within it.
        let text = unsafe {
            ffi::av_log_format_line2(
                context,
                level,
                format,
                arguments,
                line.as_mut_ptr(),
                line.len() as libc::c_int,
                &mut print_prefix,
            );
            std::ffi::CStr::from_ptr(line.as_ptr())
        };
        let text = text.to_string_lossy().trim().to_owned();
        if !text.is_empty() {
            LAST_FFMPEG_ERROR.with(|last| *last.borrow_mut() = Some(text));
        }
    }
    // SAFETY: the callback is a plain function that only formats into a local buffer and a
    // thread-local; FFmpeg may call it from any thread.
    unsafe { ffi::av_log_set_callback(Some(capture)) };
}

#[cfg(not(target_arch = "x86_64"))]
fn install_error_capture() {}

pub(crate) fn time_base(rational: ffmpeg::Rational) -> TimeBase {
    TimeBase {
        num: rational.numerator(),
        den: rational.denominator(),
    }
}

pub(crate) fn rational(time_base: TimeBase) -> ffmpeg::Rational {
    ffmpeg::Rational::new(time_base.num, time_base.den)
}

/// Seeks `input` so that the next packet read is the keyframe of `stream_index` at or before
/// `timestamp` (stream time base). Demuxers index keyframes by decoding timestamp, so callers
/// pass the keyframe's dts where they know it.
pub(crate) fn seek_to_keyframe_before(
    input: &mut ffmpeg::format::context::Input,
    stream_index: usize,
    timestamp: i64,
) -> Result<(), ffmpeg::Error> {
    let index = i32::try_from(stream_index).map_err(|_| ffmpeg::Error::StreamNotFound)?;
    // SAFETY: the context pointer is valid for the lifetime of `input`; av_seek_frame only reads
    // and repositions it.
    let status = unsafe {
        ffmpeg::ffi::av_seek_frame(
            input.as_mut_ptr(),
            index,
            timestamp,
            ffmpeg::ffi::AVSEEK_FLAG_BACKWARD,
        )
    };
    if status < 0 {
        Err(ffmpeg::Error::from(status))
    } else {
        Ok(())
    }
}

/// Seeks `input` to byte `position` of the file (a packet's position as the demuxer gave it).
pub(crate) fn seek_to_byte(
    input: &mut ffmpeg::format::context::Input,
    position: i64,
) -> Result<(), ffmpeg::Error> {
    // SAFETY: as in `seek_to_keyframe_before`.
    let status = unsafe {
        ffmpeg::ffi::av_seek_frame(
            input.as_mut_ptr(),
            -1,
            position,
            ffmpeg::ffi::AVSEEK_FLAG_BYTE,
        )
    };
    if status < 0 {
        Err(ffmpeg::Error::from(status))
    } else {
        Ok(())
    }
}

/// The stream's display matrix (rotation/flip), as the nine 16.16/2.30 fixed-point values FFmpeg
/// stores.
pub(crate) fn display_matrix(stream: &ffmpeg::format::stream::Stream) -> Option<[i32; 9]> {
    stream
        .side_data()
        .find(|side| side.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix)
        .and_then(|side| {
            let bytes = side.data();
            (bytes.len() >= 36).then(|| {
                let mut matrix = [0i32; 9];
                for (value, chunk) in matrix.iter_mut().zip(bytes.chunks_exact(4)) {
                    *value = i32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                }
                matrix
            })
        })
}

/// Counter-clockwise rotation in degrees encoded by a display matrix.
pub(crate) fn rotation_degrees(matrix: &[i32; 9]) -> f64 {
    // SAFETY: av_display_rotation_get reads exactly nine int32 values from the pointer.
    let degrees = unsafe { ffmpeg::ffi::av_display_rotation_get(matrix.as_ptr()) };
    if degrees.is_nan() {
        0.0
    } else {
        degrees
    }
}

/// Attaches `matrix` to an output stream as display-matrix side data.
pub(crate) fn set_display_matrix(
    output: &mut ffmpeg::format::context::Output,
    stream_index: usize,
    matrix: &[i32; 9],
) -> Result<(), ffmpeg::Error> {
    // SAFETY: the stream index is one we just added; av_stream_new_side_data returns a buffer of
    // the requested size (or null on allocation failure), which we fill completely.
    unsafe {
        let context = output.as_mut_ptr();
        let stream = *(*context).streams.add(stream_index);
        let size = std::mem::size_of_val(matrix);
        let data = ffmpeg::ffi::av_stream_new_side_data(
            stream,
            ffmpeg::ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
            size,
        );
        if data.is_null() {
            return Err(ffmpeg::Error::Other {
                errno: libc_enomem(),
            });
        }
        std::ptr::copy_nonoverlapping(matrix.as_ptr().cast::<u8>(), data, size);
    }
    Ok(())
}

fn libc_enomem() -> i32 {
    12
}

/// Sets the stream's disposition flags (default, forced, …) from their raw FFmpeg bits.
pub(crate) fn set_disposition(
    output: &mut ffmpeg::format::context::Output,
    stream_index: usize,
    disposition: i32,
) {
    // SAFETY: the stream index is one we just added to this context.
    unsafe {
        let context = output.as_mut_ptr();
        let stream = *(*context).streams.add(stream_index);
        (*stream).disposition = disposition;
    }
}

/// Clears the codec tag so the muxer picks its own (a tag from another container is meaningless).
pub(crate) fn clear_codec_tag(
    output: &mut ffmpeg::format::context::Output,
    stream_index: usize,
    tag: u32,
) {
    // SAFETY: the stream index is one we just added; codecpar is always allocated for it.
    unsafe {
        let context = output.as_mut_ptr();
        let stream = *(*context).streams.add(stream_index);
        (*(*stream).codecpar).codec_tag = tag;
    }
}

/// Name of a codec id as FFmpeg spells it (`h264`, `aac`, …).
pub(crate) fn codec_name(id: ffmpeg::codec::Id) -> String {
    // SAFETY: avcodec_get_name returns a static, NUL-terminated string for every id.
    unsafe { std::ffi::CStr::from_ptr(ffmpeg::ffi::avcodec_get_name(id.into())) }
        .to_string_lossy()
        .into_owned()
}

/// Opens an output file of the given muxer, writing to `path`.
/// Opens `file` for writing with `muxer`; errors name the file's target, not its hidden name.
pub(crate) fn open_output(
    file: &AtomicFile,
    muxer: &str,
) -> Result<ffmpeg::format::context::Output, MediaError> {
    ffmpeg::format::output_as(&file.path(), muxer).map_err(|source| MediaError::Write {
        path: file.target().to_owned(),
        source,
    })
}

/// Opens a media file for reading.
pub(crate) fn open_input(path: &Path) -> Result<ffmpeg::format::context::Input, MediaError> {
    demux(path).map_err(|source| MediaError::Open {
        path: path.to_owned(),
        source,
    })
}

/// Opens a media file for reading with the demuxer options the ffmpeg CLI (and ffprobe) set by
/// default, so that treemux reads the packets, and the timestamps FFmpeg fills in, as they do:
/// `scan_all_pmts` makes the MPEG-TS demuxer read every programme table before it starts, which
/// also changes the decode times it derives for packets that carry only a pts.
pub(crate) fn demux(path: &Path) -> Result<ffmpeg::format::context::Input, ffmpeg::Error> {
    let mut options = ffmpeg::Dictionary::new();
    options.set("scan_all_pmts", "1");
    ffmpeg::format::input_with_dictionary(&path, options)
}

/// Tells the demuxer to drop every stream of `input` but those in `keep` (stream indices): an
/// indexed demuxer (MP4/MOV) then seeks over their packets instead of reading them, so through
/// ranged reads a reader of the audio fetches little of the video.
pub(crate) fn discard_all_but(input: &mut ffmpeg::format::context::Input, keep: &[usize]) {
    // SAFETY: the context is open; each stream pointer is valid while it lives, and `discard`
    // is the field demuxers read for this.
    unsafe {
        let context = input.as_mut_ptr();
        for index in 0..(*context).nb_streams as usize {
            if !keep.contains(&index) {
                (**(*context).streams.add(index)).discard = ffmpeg::ffi::AVDiscard::AVDISCARD_ALL;
            }
        }
    }
}

/// True when the demuxer marked `packet` as outside the presentation (an MP4 edit list):
/// decoded, but its frame never comes out. ffmpeg-next's flags drop this bit.
pub(crate) fn is_discarded(packet: &ffmpeg::Packet) -> bool {
    // SAFETY: the packet is a valid, initialised AVPacket.
    unsafe { (*ffmpeg::packet::Ref::as_ptr(packet)).flags & ffmpeg::ffi::AV_PKT_FLAG_DISCARD != 0 }
}

/// The pts of every packet of stream 0, in decode (file) order. Packets without a pts are an
/// error: treemux writes pts on every packet it produces.
/// The next packet of `input`, `None` at the end; a read error names `path`.
pub(crate) fn read_packet(
    path: &Path,
    input: &mut ffmpeg::format::context::Input,
) -> Result<Option<ffmpeg::Packet>, MediaError> {
    // A fresh packet per read: `Packet::read` does not release the previous one.
    let mut packet = ffmpeg::Packet::empty();
    match packet.read(input) {
        Ok(()) => Ok(Some(packet)),
        Err(ffmpeg::Error::Eof) => Ok(None),
        Err(source) => Err(MediaError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

pub(crate) fn read_packet_pts(
    path: &Path,
    input: &mut ffmpeg::format::context::Input,
) -> Result<Vec<i64>, MediaError> {
    let mut pts = Vec::new();
    loop {
        // A fresh packet per read: `Packet::read` does not release the previous one.
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => return Ok(pts),
            Err(source) => {
                return Err(MediaError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        match packet.pts() {
            Some(value) => pts.push(value),
            None => {
                return Err(MediaError::Unsupported {
                    path: path.to_owned(),
                    reason: "a packet has no presentation timestamp".into(),
                })
            }
        }
    }
}

/// Writes the header of an intermediate (NUT) file. Timestamps must be kept exactly as given:
/// by default libavformat shifts a file whose first dts is negative (B-frames make it so) to
/// start at zero, by an amount that differs from file to file, which would misplace segments.
pub(crate) fn write_intermediate_header(
    muxer: &mut ffmpeg::format::context::Output,
) -> Result<(), ffmpeg::Error> {
    let mut options = ffmpeg::Dictionary::new();
    options.set("avoid_negative_ts", "disabled");
    muxer.write_header_with(options).map(|_| ())
}

/// `seconds` in ticks of `time_base`: the intermediate-file timestamp offset. Always computed the
/// same way for a given time base, so adding and removing it is exact.
pub(crate) fn offset_ticks(seconds: i64, time_base: ffmpeg::Rational) -> i64 {
    use ffmpeg::Rescale as _;
    seconds.rescale(ffmpeg::Rational::new(1, 1), time_base)
}

/// `micros` microseconds in ticks of `time_base`, rounded up: the output shift must never leave a
/// timestamp below zero.
pub(crate) fn micros_to_ticks_up(micros: i64, time_base: ffmpeg::Rational) -> i64 {
    if micros == 0 {
        return 0;
    }
    // SAFETY: av_rescale_rnd is a pure arithmetic function.
    unsafe {
        ffmpeg::ffi::av_rescale_rnd(
            micros,
            i64::from(time_base.denominator()),
            i64::from(time_base.numerator()) * 1_000_000,
            ffmpeg::ffi::AVRounding::AV_ROUND_UP,
        )
    }
}

/// Sets the colour tags (range, matrix, primaries, transfer) of an encoder before it opens.
pub(crate) fn set_color_tags(
    encoder: &mut ffmpeg::encoder::video::Video,
    tags: crate::media::picture::ColorTags,
) {
    use ffmpeg::ffi;
    // SAFETY: the context is valid and not yet open; the values were read from FFmpeg's own
    // codec parameters (or are its named constants), so they are members of each enum.
    unsafe {
        let context = encoder.as_mut_ptr();
        (*context).color_range = std::mem::transmute::<i32, ffi::AVColorRange>(tags.range);
        (*context).colorspace = std::mem::transmute::<i32, ffi::AVColorSpace>(tags.space);
        (*context).color_primaries =
            std::mem::transmute::<i32, ffi::AVColorPrimaries>(tags.primaries);
        (*context).color_trc =
            std::mem::transmute::<i32, ffi::AVColorTransferCharacteristic>(tags.transfer);
    }
}

/// Sets the colour tags of an output stream's codec parameters (NUT intermediates keep none).
pub(crate) fn set_stream_color_tags(
    output: &mut ffmpeg::format::context::Output,
    stream_index: usize,
    tags: crate::media::picture::ColorTags,
) {
    use ffmpeg::ffi;
    // SAFETY: the stream index is one we just added; codecpar is always allocated for it; the
    // values are members of each enum (see `set_color_tags`).
    unsafe {
        let context = output.as_mut_ptr();
        let stream = *(*context).streams.add(stream_index);
        let par = (*stream).codecpar;
        (*par).color_range = std::mem::transmute::<i32, ffi::AVColorRange>(tags.range);
        (*par).color_space = std::mem::transmute::<i32, ffi::AVColorSpace>(tags.space);
        (*par).color_primaries = std::mem::transmute::<i32, ffi::AVColorPrimaries>(tags.primaries);
        (*par).color_trc =
            std::mem::transmute::<i32, ffi::AVColorTransferCharacteristic>(tags.transfer);
    }
}

/// Adds `ticks` to a packet's pts and dts (where set).
pub(crate) fn shift_packet(packet: &mut ffmpeg::Packet, ticks: i64) {
    if ticks != 0 {
        packet.set_pts(packet.pts().map(|pts| pts + ticks));
        packet.set_dts(packet.dts().map(|dts| dts + ticks));
    }
}

/// Marks `packet` so that its decoder drops the first `samples` decoded samples (FFmpeg's
/// `AV_PKT_DATA_SKIP_SAMPLES`: little-endian skip count, end padding 0), unless it already
/// carries such a mark. For a track's first packet copied through a NUT intermediate, which does
/// not keep the demuxer's mark of the encoder priming.
pub(crate) fn mark_skip_samples(packet: &mut ffmpeg::Packet, samples: u32) {
    let marked = packet
        .side_data()
        .any(|side| side.kind() == ffmpeg::codec::packet::side_data::Type::SkipSamples);
    if samples == 0 || marked {
        return;
    }
    // SAFETY: the packet is owned; av_packet_new_side_data returns a buffer of the asked size
    // (or null on allocation failure, left unmarked) that lives as long as the packet.
    use ffmpeg::packet::Mut;
    unsafe {
        let data = ffmpeg::ffi::av_packet_new_side_data(
            packet.as_mut_ptr(),
            ffmpeg::ffi::AVPacketSideDataType::AV_PKT_DATA_SKIP_SAMPLES,
            10,
        );
        if !data.is_null() {
            let bytes = std::slice::from_raw_parts_mut(data, 10);
            bytes.fill(0);
            bytes[..4].copy_from_slice(&samples.to_le_bytes());
        }
    }
}
