//! Per-job settings: each layer read, the layers in order, the core's checks.

use super::*;

fn metadata(pairs: &[(&str, &str)]) -> Result<SettingsLayer, SettingsError> {
    SettingsLayer::from_metadata(
        &pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

#[test]
fn metadata_names_and_values_are_read_or_refused_by_name() {
    let layer = metadata(&[
        ("treemux-codec", "h265"),
        ("treemux-crf", "26"),
        ("treemux-height", "720"),
        ("Treemux-Upscale", "yes"),
        ("camera", "not treemux's"),
    ])
    .expect("layer");
    assert_eq!(layer.codec, Some(VideoCodec::H265));
    assert_eq!(layer.rate, Some(RateControl::Crf(26)));
    assert_eq!(layer.height, Some(Some(720)));
    assert_eq!(layer.upscale, Some(true));
    assert_eq!(layer.from["crf"], "x-amz-meta-treemux-crf");
    let unknown = metadata(&[("treemux-qualty", "20")]).expect_err("unknown");
    assert!(unknown.to_string().contains("unknown setting \"qualty\""));
    assert!(unknown.to_string().contains("x-amz-meta-treemux-qualty"));
    let bad = metadata(&[("treemux-crf", "high")]).expect_err("bad");
    assert!(bad
        .to_string()
        .contains("crf=\"high\": expected a whole number"));
    let both = metadata(&[("treemux-crf", "20"), ("treemux-bitrate", "2M")]);
    assert!(matches!(both, Err(SettingsError::CrfAndBitrate { .. })));
}

#[test]
fn json_values_may_be_numbers_strings_or_booleans() {
    let spec = SettingsLayer::from_spec(
        br#"{"crf": 30, "height": "480", "upscale": false, "container": "webm"}"#,
        "s3://in/a.mp4.treemux.json",
    )
    .expect("spec");
    assert_eq!(spec.rate, Some(RateControl::Crf(30)));
    assert_eq!(spec.container, Some(Container::WebM));
    assert_eq!(spec.from["height"], "s3://in/a.mp4.treemux.json: height");
    assert!(SettingsLayer::from_spec(b"[1]", "spec").is_err());
    assert!(SettingsLayer::from_spec(br#"{"crf": [1]}"#, "spec").is_err());
    let nested = parse_templates(r#"{"a": {"template": "b"}}"#).expect_err("nested");
    assert!(nested.to_string().contains("unknown setting \"template\""));
}

#[test]
fn layers_apply_in_order_and_a_new_codec_starts_from_its_defaults() {
    let mut defaults = EncodeSettings::new(VideoCodec::H264);
    defaults.preset = "veryfast".into();
    defaults.threads = 2;
    let templates = parse_templates(r#"{"small": {"height": 360, "crf": 28}}"#)
        .expect("the test's settings are readable");
    let spec = SettingsLayer::from_spec(br#"{"template": "small", "crf": 30}"#, "spec")
        .expect("the test's settings are readable");
    let meta = metadata(&[("treemux-crf", "31")]).expect("the test's settings are readable");
    let resolved = resolve(&defaults, Container::Mp4, &templates, Some(&spec), &meta)
        .expect("the test's settings are readable");
    let encode = &resolved.settings.encode;
    assert_eq!(
        encode.rate,
        RateControl::Crf(31),
        "metadata over spec over template"
    );
    assert_eq!(encode.height, Some(360), "the template's");
    assert_eq!(encode.preset, "veryfast", "the stack's, same codec");
    assert_eq!(encode.threads, 2);
    assert_eq!(resolved.from["crf"], "x-amz-meta-treemux-crf");
    assert_eq!(
        resolved.from["height"],
        "TREEMUX_TEMPLATES template small: height"
    );
    assert_eq!(resolved.from["template"], "spec: template");

    let vp9 = metadata(&[("treemux-codec", "vp9")]).expect("the test's settings are readable");
    let resolved = resolve(&defaults, Container::Mp4, &templates, None, &vp9)
        .expect("the test's settings are readable");
    assert_eq!(
        resolved.settings.encode.preset, "4",
        "vp9's default, not veryfast"
    );
    assert_eq!(resolved.settings.encode.rate, RateControl::Crf(31));

    let webm =
        metadata(&[("treemux-container", "webm")]).expect("the test's settings are readable");
    let resolved = resolve(&defaults, Container::Mp4, &templates, None, &webm)
        .expect("the test's settings are readable");
    assert_eq!(resolved.settings.encode.codec, VideoCodec::Vp9);

    let bitrate = metadata(&[("treemux-bitrate", "1M")]).expect("the test's settings are readable");
    let resolved = resolve(&defaults, Container::Mp4, &templates, Some(&spec), &bitrate)
        .expect("the test's settings are readable");
    assert_eq!(
        resolved.settings.encode.rate,
        RateControl::Bitrate(1_000_000)
    );
    assert!(!resolved.from.contains_key("crf"));
}

#[test]
fn combinations_are_checked_by_the_cores_rules() {
    let defaults = EncodeSettings::new(VideoCodec::H264);
    let none = Templates::new();
    let check = |pairs: &[(&str, &str)]| {
        resolve(
            &defaults,
            Container::Mp4,
            &none,
            None,
            &metadata(pairs).expect("the test's settings are readable"),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let webm_h264 = check(&[("treemux-container", "webm"), ("treemux-codec", "h264")]);
    assert!(
        webm_h264.is_err_and(|e| e.contains("a .webm file cannot hold h264 video")
            && e.contains("container from x-amz-meta-treemux-container"))
    );
    let preset = check(&[("treemux-preset", "sluggish")]);
    assert!(preset
        .is_err_and(|e| e.contains("preset sluggish")
            && e.contains("preset from x-amz-meta-treemux-preset")));
    assert!(check(&[("treemux-crf", "60")]).is_err_and(|e| e.contains("0 to 51")));
    let template = check(&[("treemux-template", "web")]);
    assert!(template.is_err_and(|e| e.contains("template \"web\"") && e.contains("has none")));
    assert_eq!(check(&[]), Ok(()));
}

#[test]
fn renditions_and_packaging_are_read_layered_and_checked() {
    let layer = metadata(&[
        ("treemux-renditions", "1080,720:crf=23, 480"),
        ("treemux-packaging", "HLS"),
    ])
    .expect("the test's settings are readable");
    let ladder = layer.renditions.clone().expect("a ladder");
    assert_eq!(ladder.len(), 3);
    assert_eq!(ladder[1].height, 720);
    assert_eq!(ladder[1].rate, Some(RateControl::Crf(23)));
    assert_eq!(layer.packaging, Some(Some(PackageFormat::Hls)));
    assert_eq!(layer.from["renditions"], "x-amz-meta-treemux-renditions");

    let bad = metadata(&[("treemux-renditions", "720,720")]).expect_err("twice");
    let text = bad.to_string();
    assert!(
        text.contains("x-amz-meta-treemux-renditions")
            && text.contains("renditions=\"720,720\"")
            && text.contains("720 is listed twice")
            && !text.contains("--"),
        "{text}"
    );
    let bad = metadata(&[("treemux-packaging", "smooth")]).expect_err("unknown packaging");
    assert!(bad.to_string().contains("expected hls, dash or none"));

    // The spec's ladder and packaging, the metadata's "none" over them: one file.
    let defaults = EncodeSettings::new(VideoCodec::H264);
    let none = Templates::new();
    let spec =
        SettingsLayer::from_spec(br#"{"renditions": "720,360", "packaging": "dash"}"#, "spec")
            .expect("the test's settings are readable");
    let resolved = resolve(&defaults, Container::Mp4, &none, Some(&spec), &layer)
        .expect("the test's settings are valid");
    assert_eq!(
        resolved.settings.renditions, ladder,
        "the metadata's ladder"
    );
    assert_eq!(resolved.settings.packaging, Some(PackageFormat::Hls));
    let off = metadata(&[
        ("treemux-renditions", "none"),
        ("treemux-packaging", "none"),
    ])
    .expect("the test's settings are readable");
    let resolved = resolve(&defaults, Container::Mp4, &none, Some(&spec), &off)
        .expect("the test's settings are valid");
    assert!(resolved.settings.renditions.is_empty());
    assert_eq!(resolved.settings.packaging, None);
    let from_spec = resolve(
        &defaults,
        Container::Mp4,
        &none,
        Some(&spec),
        &SettingsLayer::default(),
    )
    .expect("the test's settings are valid");
    assert_eq!(from_spec.settings.packaging, Some(PackageFormat::Dash));
    assert_eq!(from_spec.settings.renditions.len(), 2);

    let check = |pairs: &[(&str, &str)]| {
        resolve(
            &defaults,
            Container::Mp4,
            &none,
            None,
            &metadata(pairs).expect("the test's settings are readable"),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let mkv = check(&[("treemux-packaging", "hls"), ("treemux-container", "mkv")]);
    assert!(
        mkv.is_err_and(|e| e.contains("container must be mp4, not mkv")
            && e.contains("packaging from x-amz-meta-treemux-packaging")),
    );
    let vp9 = check(&[("treemux-packaging", "dash"), ("treemux-codec", "vp9")]);
    assert!(vp9.is_err_and(|e| e.contains("h264 or h265 video, not vp9")));
    let rung_crf = check(&[("treemux-renditions", "720:crf=60,360")]);
    assert!(rung_crf.is_err_and(|e| e.contains("rendition 720p") && e.contains("crf 60")));
    assert_eq!(check(&[("treemux-renditions", "720,360")]), Ok(()));

    // A stack template may carry a ladder and its packaging (as MediaConvert's ABR templates).
    let templates = parse_templates(r#"{"abr": {"renditions": "720,480", "packaging": "hls"}}"#)
        .expect("the test's template is readable");
    let chosen = metadata(&[("treemux-template", "abr")]).expect("readable");
    let resolved = resolve(&defaults, Container::Mp4, &templates, None, &chosen)
        .expect("the template is valid");
    assert_eq!(resolved.settings.renditions.len(), 2);
    assert_eq!(resolved.settings.packaging, Some(PackageFormat::Hls));
    assert_eq!(
        resolved.from["packaging"],
        "TREEMUX_TEMPLATES template abr: packaging"
    );
}
