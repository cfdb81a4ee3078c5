//! QR code images of the seal URL (SPEC §5), and reading QR codes back from photos.
//!
//! Rendering: error-correction level Q (a quarter of the symbol may be damaged or dirty and it
//! still reads, which suits labels on engines and gearboxes), a quiet zone of 4 modules, and an
//! integer number of pixels per module so that every module edge is sharp. Both renderings are
//! exactly `size_px` × `size_px`: the largest whole module size that fits is chosen and the
//! remaining pixels are added as extra white margin around the symbol (split evenly, so the
//! quiet zone is at least 4 modules). Only when even one pixel per module would not fit (a
//! large symbol asked at a tiny size) is the image larger than asked: one pixel per module
//! plus the quiet zone, since a smaller image would not be readable.
//!
//! Reading: [`decode_image`] takes a PNG or JPEG photo of a label, as uploaded from a phone,
//! and tries several preparations of it (reduced, smoothed, sharpened, binarized, enlarged)
//! until the pure-Rust decoder `rqrr` reads a code.
//!
//! Nothing here does I/O: images come in and go out as bytes.

use image::{GrayImage, ImageFormat, ImageReader, Limits, imageops};
use qrcode::{Color, EcLevel, QrCode, Version};
use std::fmt::Write as _;
use std::io::Cursor;

/// The smallest image size, in pixels, that may be asked for.
pub const MIN_SIZE: u32 = 64;

/// The largest image size, in pixels, that may be asked for.
pub const MAX_SIZE: u32 = 2048;

/// The image size used when none is asked for: readable on screen and in print.
pub const DEFAULT_SIZE: u32 = 320;

/// The quiet zone around the symbol, in modules, as ISO/IEC 18004 requires.
pub const QUIET_ZONE: u32 = 4;

/// The largest photo side, in pixels, that [`decode_image`] accepts (a 48-megapixel phone
/// photo is 8000 × 6000). Together with the allocation limit this stops a small file that
/// claims a huge picture from exhausting the server's memory.
pub const MAX_PHOTO_SIDE: u32 = 8192;

/// The most memory, in bytes, the image decoder may allocate for one photo.
const MAX_PHOTO_ALLOC: u64 = 256 * 1024 * 1024;

/// [`MAX_PHOTO_ALLOC`] in MiB, for messages.
const MAX_PHOTO_MIB: u64 = MAX_PHOTO_ALLOC / (1024 * 1024);

/// Photos are first searched at this size (longest side), which keeps the search fast and
/// still leaves several pixels per module for a label that fills a fair part of the frame.
const WORK_SIDE: u32 = 1600;

/// Pictures up to this size (longest side) are also tried enlarged.
const SMALL_SIDE: u32 = 800;

/// Pictures up to this size (longest side, once reduced) are also tried enlarged with a sharp
/// filter; the enlarged picture (5 megapixels at most) takes the decoder about half a second.
const ENLARGE_SIDE: u32 = 1280;

/// Large photos are also binarized against the local light at up to this size (longest side):
/// a small label far away keeps more pixels per module than at [`WORK_SIDE`], and the
/// neighbourhood sums stay below 50 MB.
const LOCAL_FULL_SIDE: u32 = 2400;

/// How densely an image may show finder-pattern candidates (the 1:1:3:1:1 squares in a QR
/// code's corners, and their look-alikes in data modules and noise) before the decoder is run
/// on it: at most one per this many pixels, or [`MIN_FINDER_LIMIT`]. The decoder's grouping of
/// candidates grows much faster than their number: a 256-pixel image tiled with finder
/// patterns (one per 64 pixels) took it 18 s and gigabytes, a 512-pixel one minutes. Labels
/// and photos measured show one per 1,500 pixels or fewer.
const PIXELS_PER_FINDER: usize = 256;

/// The candidates any image may show, however small.
const MIN_FINDER_LIMIT: usize = 60;

/// Time after which no further decoding pass is started on one photo.
const DECODE_BUDGET: std::time::Duration = std::time::Duration::from_secs(6);

/// Why a QR code could not be rendered or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    /// The asked image size is outside [`MIN_SIZE`]..=[`MAX_SIZE`].
    #[error("QR image size {0} px is out of range: expected {MIN_SIZE} to {MAX_SIZE} pixels")]
    SizeOutOfRange(u32),
    /// The content does not fit in the largest QR symbol at error-correction level Q.
    #[error(
        "QR content of {0} bytes is too long: at error-correction level Q a QR code holds at most 1663 bytes"
    )]
    ContentTooLong(usize),
    /// The QR encoder refused the content for another reason.
    #[error("the QR encoder refused the content: {0}")]
    Encode(String),
    /// The PNG encoder failed.
    #[error("the PNG encoder failed: {0}")]
    PngEncode(String),
    /// The uploaded file is not a PNG or JPEG image.
    #[error(
        "the file is not a PNG or JPEG image: upload a photo or screenshot in one of these formats"
    )]
    UnsupportedImage,
    /// The PNG or JPEG data is damaged or truncated.
    #[error("the image could not be decoded ({0}): upload the complete, undamaged file")]
    BadImage(String),
    /// The image is larger than the decoder accepts.
    #[error(
        "the image is too large ({0}): at most {MAX_PHOTO_SIDE} pixels on a side and {MAX_PHOTO_MIB} MiB once decoded are accepted; send a smaller or 8-bit picture"
    )]
    ImageTooLarge(String),
    /// No QR code was found in the image.
    #[error(
        "no QR code found in the image: photograph the label straight on, with the code filling a good part of the picture, sharp and well lit"
    )]
    NoQrCode,
    /// QR codes were found but none could be read.
    #[error(
        "{0} QR code(s) found but none could be read: take a sharper picture, closer and without glare"
    )]
    Unreadable(usize),
}

/// Encodes `content` at level Q. The version is the smallest that holds the content.
fn encode(content: &str) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(content.as_bytes(), EcLevel::Q).map_err(|e| match e {
        qrcode::types::QrError::DataTooLong => QrError::ContentTooLong(content.len()),
        other => QrError::Encode(other.to_string()),
    })
}

/// The QR symbol version (1 to 40) that holds `content` at error-correction level Q. The
/// higher the version, the denser the symbol and the harder it is to scan from a small label.
pub fn version(content: &str) -> Result<i16, QrError> {
    match encode(content)?.version() {
        Version::Normal(v) | Version::Micro(v) => Ok(v),
    }
}

/// The pixel layout of a rendering: which modules are dark and where they go.
struct Layout {
    /// Modules per side of the symbol, without the quiet zone.
    modules: u32,
    /// Dark flags, row by row, `modules` × `modules`.
    dark: Vec<bool>,
    /// Pixels per module.
    module_px: u32,
    /// Side of the whole image in pixels.
    side: u32,
    /// Offset in pixels of the symbol's first module from the top and left edges.
    offset: u32,
}

impl Layout {
    fn new(content: &str, size_px: u32) -> Result<Layout, QrError> {
        if !(MIN_SIZE..=MAX_SIZE).contains(&size_px) {
            return Err(QrError::SizeOutOfRange(size_px));
        }
        let code = encode(content)?;
        let modules = u32::try_from(code.width())
            .map_err(|_| QrError::Encode("symbol too wide".to_owned()))?;
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        let with_quiet = modules + 2 * QUIET_ZONE;
        let module_px = (size_px / with_quiet).max(1);
        let side = size_px.max(with_quiet);
        // Whatever the modules do not fill is shared evenly by the two margins.
        let offset = (side - modules * module_px) / 2;
        Ok(Layout {
            modules,
            dark,
            module_px,
            side,
            offset,
        })
    }

    fn is_dark(&self, col: u32, row: u32) -> bool {
        let i = usize::try_from(row * self.modules + col).unwrap_or(usize::MAX);
        self.dark.get(i).copied().unwrap_or(false)
    }

    /// The image as 8-bit luma pixels (0 black, 255 white), row by row.
    fn luma(&self) -> Vec<u8> {
        let side = self.side as usize;
        let mut px = vec![255u8; side * side];
        for (y, row) in px.chunks_exact_mut(side).enumerate() {
            let Some(my) = module_of(y as u32, self.offset, self.module_px, self.modules) else {
                continue;
            };
            for (x, p) in row.iter_mut().enumerate() {
                if let Some(mx) = module_of(x as u32, self.offset, self.module_px, self.modules)
                    && self.is_dark(mx, my)
                {
                    *p = 0;
                }
            }
        }
        px
    }
}

/// The module that pixel coordinate `p` falls in, if it falls in the symbol.
fn module_of(p: u32, offset: u32, module_px: u32, modules: u32) -> Option<u32> {
    let m = p.checked_sub(offset)? / module_px;
    (m < modules).then_some(m)
}

/// Renders `content` as an 8-bit grayscale PNG of `size_px` × `size_px` pixels (see the
/// module documentation for how the size is met). Refuses sizes outside
/// [`MIN_SIZE`]..=[`MAX_SIZE`].
pub fn png(content: &str, size_px: u32) -> Result<Vec<u8>, QrError> {
    let layout = Layout::new(content, size_px)?;
    let pixels = layout.luma();
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, layout.side, layout.side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let err = |e: png::EncodingError| QrError::PngEncode(e.to_string());
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(&pixels).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// Renders `content` as an SVG document of `size_px` × `size_px` pixels: a white square and one
/// black path, in pixel coordinates on the same grid as [`png()`], with crisp edges. Refuses
/// sizes outside [`MIN_SIZE`]..=[`MAX_SIZE`].
pub fn svg(content: &str, size_px: u32) -> Result<String, QrError> {
    let l = Layout::new(content, size_px)?;
    let s = l.side;
    let m = l.module_px;
    let mut path = String::new();
    // One sub-path per horizontal run of dark modules keeps the document small.
    for row in 0..l.modules {
        let mut col = 0;
        while col < l.modules {
            if !l.is_dark(col, row) {
                col += 1;
                continue;
            }
            let start = col;
            while col < l.modules && l.is_dark(col, row) {
                col += 1;
            }
            let w = (col - start) * m;
            let _ = write!(
                path,
                "M{} {}h{w}v{m}h-{w}z",
                l.offset + start * m,
                l.offset + row * m
            );
        }
    }
    Ok(format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "\n",
            r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{s}" height="{s}" viewBox="0 0 {s} {s}" shape-rendering="crispEdges">"#,
            r##"<rect x="0" y="0" width="{s}" height="{s}" fill="#ffffff"/>"##,
            r##"<path fill="#000000" d="{path}"/>"##,
            "</svg>\n"
        ),
        s = s,
        path = path
    ))
}

/// Reads the QR code(s) in a PNG or JPEG image, such as a phone photo of a label, and returns
/// their text contents (at least one; duplicates removed, in the order found).
///
/// The decoder (`rqrr`) thresholds each row against a running average, which fails on soft
/// module edges, noise and uneven light, so the photo is tried in several preparations,
/// cheapest first, until one reads: as it is (reduced to at most 1600 pixels a side, since
/// phone photos are large); lightly blurred and binarized at a global (Otsu) and at a local
/// (mean of the neighbourhood) threshold; sharpened (unsharp mask, for out-of-focus and
/// grainy pictures) and binarized; for small pictures, enlarged twice, smoothed and
/// binarized, or else reduced to 800 pixels; for pictures up to 1280 pixels, enlarged twice
/// with a sharp filter and binarized; and last, for large photos, binarized locally at up to
/// 2400 pixels and as it is at full size. A photo without a readable code takes one or two
/// seconds: call it off the async executor.
pub fn decode_image(bytes: &[u8]) -> Result<Vec<String>, QrError> {
    let gray = load_luma(bytes)?;
    let longest = gray.width().max(gray.height());
    let working = shrink(&gray, WORK_SIDE);
    let (gray, working) = (&gray, &working);

    type Pass<'a> = Box<dyn Fn() -> GrayImage + 'a>;
    let mut passes: Vec<Pass<'_>> = vec![
        Box::new(|| working.clone()),
        Box::new(|| binarize_global(&imageops::blur(working, 0.6))),
        Box::new(|| binarize_local(working)),
        Box::new(|| binarize_local(&imageops::blur(working, 0.6))),
        // Out of focus, shaken or grainy: smooth the grain, give the module edges back their
        // steepness (unsharp mask), then binarize.
        Box::new(|| binarize_global(&sharpen(&imageops::blur(working, 1.0), 3.0, 2.5))),
        Box::new(|| binarize_global(&sharpen(working, 2.0, 2.0))),
    ];
    if longest <= SMALL_SIDE {
        // Few pixels per module: enlarging with smoothing evens out the module edges.
        let enlarged = move || enlarge(&imageops::blur(working, 1.0), 2);
        passes.push(Box::new(move || binarize_global(&enlarged())));
        passes.push(Box::new(move || binarize_local(&enlarged())));
        passes.push(Box::new(enlarged));
    } else {
        passes.push(Box::new(|| shrink(working, WORK_SIDE / 2)));
        passes.push(Box::new(|| {
            binarize_global(&imageops::blur(&shrink(working, WORK_SIDE / 2), 0.6))
        }));
    }
    if working.width().max(working.height()) <= ENLARGE_SIDE {
        // Several defects at once (small, tilted, soft and grainy): smoothed lightly, enlarged
        // with a sharp (Catmull-Rom) filter, so the module edges fall between pixels where
        // they were, and binarized.
        passes.push(Box::new(|| {
            binarize_global(&enlarge_sharp(&imageops::blur(working, 0.8), 2))
        }));
    }
    if longest > WORK_SIDE {
        // Last resorts for a small label far away in a large photo: more pixels per module,
        // binarized against the local light at a size that keeps memory bounded, and as it
        // is at full size (the preparations above would cost too much memory there).
        passes.push(Box::new(|| binarize_local(&shrink(gray, LOCAL_FULL_SIDE))));
        passes.push(Box::new(|| gray.clone()));
    }

    let started = std::time::Instant::now();
    let mut found = 0;
    for pass in passes {
        if started.elapsed() > DECODE_BUDGET {
            break;
        }
        let (texts, grids) = read_codes(&pass());
        if !texts.is_empty() {
            return Ok(texts);
        }
        found = found.max(grids);
    }
    Err(if found > 0 {
        QrError::Unreadable(found)
    } else {
        QrError::NoQrCode
    })
}

/// Decodes a PNG or JPEG (only those) to 8-bit luma, within size limits.
fn load_luma(bytes: &[u8]) -> Result<GrayImage, QrError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| QrError::BadImage(e.to_string()))?;
    if !matches!(reader.format(), Some(ImageFormat::Png | ImageFormat::Jpeg)) {
        return Err(QrError::UnsupportedImage);
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_PHOTO_SIDE);
    limits.max_image_height = Some(MAX_PHOTO_SIDE);
    limits.max_alloc = Some(MAX_PHOTO_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => QrError::ImageTooLarge(l.to_string()),
        other => QrError::BadImage(other.to_string()),
    })?;
    Ok(img.into_luma8())
}

/// Runs the decoder on one luma image: the texts read (deduplicated) and the number of
/// symbols detected.
fn read_codes(img: &GrayImage) -> (Vec<String>, usize) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let most = MIN_FINDER_LIMIT.max(w * h / PIXELS_PER_FINDER);
    if w == 0 || h == 0 || finder_candidates(img, most + 1) > most {
        return (Vec::new(), 0);
    }
    // The decoder is third-party code fed with untrusted uploads: a panic in it must become
    // "not read", never take the request (or a server thread) down.
    let result = std::panic::catch_unwind(|| {
        let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
            img.get_pixel(x as u32, y as u32).0[0]
        });
        let grids = prepared.detect_grids();
        let mut texts: Vec<String> = Vec::new();
        for grid in &grids {
            if let Ok((_, text)) = grid.decode()
                && !texts.contains(&text)
            {
                texts.push(text);
            }
        }
        (texts, grids.len())
    });
    result.unwrap_or_default()
}

/// Counts, up to `stop`, the finder-pattern candidates of `img` (thresholded at its mean
/// light): runs of dark, light, dark, light, dark in a row whose lengths go about 1:1:3:1:1,
/// those of consecutive rows at about the same place counted once.
fn finder_candidates(img: &GrayImage, stop: usize) -> usize {
    let (w, h) = img.dimensions();
    let sum: u64 = img.pixels().map(|p| u64::from(p.0[0])).sum();
    let mean = sum / (u64::from(w) * u64::from(h)).max(1);
    let mut count = 0;
    let mut previous: Vec<(u32, u32)> = Vec::new();
    let mut current: Vec<(u32, u32)> = Vec::new();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for y in 0..h {
        // The row's runs of one shade: (start, length), dark ones at even places once the
        // first light run is dropped.
        runs.clear();
        let mut x = 0;
        while x < w {
            let dark = u64::from(img.get_pixel(x, y).0[0]) < mean;
            let start = x;
            while x < w && (u64::from(img.get_pixel(x, y).0[0]) < mean) == dark {
                x += 1;
            }
            if dark || !runs.is_empty() {
                runs.push((start, x - start));
            }
        }
        current.clear();
        for i in (0..runs.len().saturating_sub(4)).step_by(2) {
            let r = &runs[i..i + 5];
            let unit = (r[0].1 + r[1].1 + r[2].1 + r[3].1 + r[4].1) as f32 / 7.0;
            let near = |len: u32, n: f32| (len as f32 - n * unit).abs() <= unit * 0.75;
            if near(r[0].1, 1.0)
                && near(r[1].1, 1.0)
                && near(r[2].1, 3.0)
                && near(r[3].1, 1.0)
                && near(r[4].1, 1.0)
            {
                let center = r[2].0 + r[2].1 / 2;
                if !vertical_finder(img, mean, center, y, unit) {
                    continue;
                }
                let seen = previous
                    .iter()
                    .any(|&(c, u)| c.abs_diff(center) <= u.max(2));
                if !seen {
                    count += 1;
                    if count >= stop {
                        return count;
                    }
                }
                current.push((center, unit.ceil() as u32));
            }
        }
        std::mem::swap(&mut previous, &mut current);
    }
    count
}

/// Whether the column through `(x, y)`, the middle of a row's 1:1:3:1:1 runs of about `unit`
/// pixels each, shows the same runs across `y`: a finder pattern is square.
fn vertical_finder(img: &GrayImage, mean: u64, x: u32, y: u32, unit: f32) -> bool {
    let h = img.height();
    let dark = |y: u32| u64::from(img.get_pixel(x, y).0[0]) < mean;
    // Lengths of the runs met going away from `y` (its own run first, whole), up to 3 runs,
    // each at most 4 units long, in one direction.
    let limit = (unit * 4.0).ceil() as u32 + 1;
    let walk = |up: bool| -> [u32; 3] {
        let mut lens = [0u32; 3];
        let mut yy = y;
        let mut shade = true;
        for len in &mut lens {
            while dark(yy) == shade && *len <= limit {
                *len += 1;
                if up {
                    if yy == 0 {
                        return lens;
                    }
                    yy -= 1;
                } else {
                    if yy + 1 >= h {
                        return lens;
                    }
                    yy += 1;
                }
            }
            shade = !shade;
        }
        lens
    };
    if !dark(y) {
        return false;
    }
    let (up, down) = (walk(true), walk(false));
    // The middle run is counted from both sides, the pixel at `y` twice.
    let runs = [up[2], up[1], up[0] + down[0] - 1, down[1], down[2]];
    let total: u32 = runs.iter().sum();
    let unit = total as f32 / 7.0;
    let near = |len: u32, n: f32| (len as f32 - n * unit).abs() <= unit * 0.75;
    runs.iter().all(|&r| r > 0)
        && near(runs[0], 1.0)
        && near(runs[1], 1.0)
        && near(runs[2], 3.0)
        && near(runs[3], 1.0)
        && near(runs[4], 1.0)
}

/// A copy whose longest side is at most `side` pixels (area-averaged).
fn shrink(img: &GrayImage, side: u32) -> GrayImage {
    let (w, h) = img.dimensions();
    let longest = w.max(h);
    if longest <= side {
        return img.clone();
    }
    let scaled = |v: u32| {
        let s = u64::from(v) * u64::from(side) / u64::from(longest);
        u32::try_from(s).unwrap_or(side).max(1)
    };
    imageops::thumbnail(img, scaled(w), scaled(h))
}

/// A copy enlarged `factor` times, bilinear.
fn enlarge(img: &GrayImage, factor: u32) -> GrayImage {
    let (w, h) = img.dimensions();
    imageops::resize(
        img,
        w.saturating_mul(factor),
        h.saturating_mul(factor),
        imageops::FilterType::Triangle,
    )
}

/// An unsharp mask: `img + amount × (img − blur(img, sigma))`. Steepens the soft module edges
/// of an out-of-focus picture, so that thresholding finds them where they were printed.
fn sharpen(img: &GrayImage, sigma: f32, amount: f32) -> GrayImage {
    let soft = imageops::blur(img, sigma);
    let mut out = img.clone();
    for (p, s) in out.pixels_mut().zip(soft.pixels()) {
        let v = f32::from(p.0[0]);
        let sharp = v + amount * (v - f32::from(s.0[0]));
        p.0[0] = sharp.round().clamp(0.0, 255.0) as u8;
    }
    out
}

/// A copy enlarged `factor` times with the Catmull-Rom filter, which keeps edges steep.
fn enlarge_sharp(img: &GrayImage, factor: u32) -> GrayImage {
    let (w, h) = img.dimensions();
    imageops::resize(
        img,
        w.saturating_mul(factor),
        h.saturating_mul(factor),
        imageops::FilterType::CatmullRom,
    )
}

/// A black-and-white copy, thresholded at Otsu's threshold: removes noise and soft edges on an
/// evenly lit picture.
fn binarize_global(img: &GrayImage) -> GrayImage {
    let t = otsu_threshold(&histogram(img));
    let mut out = img.clone();
    for p in out.pixels_mut() {
        p.0[0] = if p.0[0] <= t { 0 } else { 255 };
    }
    out
}

/// A black-and-white copy where a pixel is black when it is darker than 92 % of the mean of
/// its neighbourhood (a square of side about 1/8 of the picture): copes with light that falls
/// off across the label, where one global threshold cannot.
fn binarize_local(img: &GrayImage) -> GrayImage {
    let (w, h) = img.dimensions();
    let (wu, hu) = (w as usize, h as usize);
    // Integral image: sums[y][x] = sum of the pixels above and left of (x, y).
    let stride = wu + 1;
    let mut sums = vec![0u64; stride * (hu + 1)];
    for (y, row) in img.rows().enumerate() {
        let mut run = 0u64;
        for (x, p) in row.enumerate() {
            run += u64::from(p.0[0]);
            let above = sums.get(y * stride + x + 1).copied().unwrap_or(0);
            if let Some(s) = sums.get_mut((y + 1) * stride + x + 1) {
                *s = above + run;
            }
        }
    }
    let at = |x: usize, y: usize| sums.get(y * stride + x).copied().unwrap_or(0);
    let r = (wu.max(hu) / 16).max(8);
    let mut out = img.clone();
    for (x, y, p) in out.enumerate_pixels_mut() {
        let (x, y) = (x as usize, y as usize);
        let (x0, y0) = (x.saturating_sub(r), y.saturating_sub(r));
        let (x1, y1) = ((x + r + 1).min(wu), (y + r + 1).min(hu));
        let sum = (at(x1, y1) + at(x0, y0)).saturating_sub(at(x1, y0) + at(x0, y1));
        let n = ((x1 - x0) * (y1 - y0)) as u64;
        let dark = u64::from(p.0[0]) * n * 100 < sum * 92;
        p.0[0] = if dark { 0 } else { 255 };
    }
    out
}

fn histogram(img: &GrayImage) -> [u64; 256] {
    let mut hist = [0u64; 256];
    for p in img.pixels() {
        hist[usize::from(p.0[0])] += 1;
    }
    hist
}

/// Otsu's method: the threshold that maximises the between-class variance.
fn otsu_threshold(hist: &[u64; 256]) -> u8 {
    let total: f64 = hist.iter().map(|&n| n as f64).sum();
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &n)| i as f64 * n as f64)
        .sum();
    let (mut w_b, mut sum_b, mut best, mut best_t) = (0.0, 0.0, -1.0, 127u8);
    for (t, &n) in hist.iter().enumerate() {
        w_b += n as f64;
        let w_f = total - w_b;
        if w_b == 0.0 {
            continue;
        }
        if w_f == 0.0 {
            break;
        }
        sum_b += t as f64 * n as f64;
        let (m_b, m_f) = (sum_b / w_b, (sum_all - sum_b) / w_f);
        let between = w_b * w_f * (m_b - m_f) * (m_b - m_f);
        if between > best {
            best = between;
            best_t = u8::try_from(t).unwrap_or(127);
        }
    }
    best_t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_fills_the_asked_size() {
        // Version 1 is 21 modules, 29 with the quiet zone: 320 / 29 = 11 px per module.
        let l = Layout::new("A", 320).unwrap();
        assert_eq!((l.modules, l.module_px, l.side), (21, 11, 320));
        assert_eq!(l.offset, (320 - 21 * 11) / 2);
        assert!(l.offset >= QUIET_ZONE * l.module_px);
        let px = l.luma();
        assert_eq!(px.len(), 320 * 320);
        // The top-left finder pattern starts dark at the offset; the margin is white.
        let at = |x: u32, y: u32| px[(y * 320 + x) as usize];
        assert_eq!(at(l.offset, l.offset), 0);
        assert_eq!(at(l.offset - 1, l.offset), 255);
        assert_eq!(at(0, 0), 255);
    }

    #[test]
    fn layout_grows_when_one_pixel_per_module_does_not_fit() {
        let long = "x".repeat(600); // far beyond 64 - 8 = 56 modules
        let l = Layout::new(&long, MIN_SIZE).unwrap();
        assert_eq!(l.module_px, 1);
        assert_eq!(l.side, l.modules + 2 * QUIET_ZONE);
        assert_eq!(l.offset, QUIET_ZONE);
    }

    #[test]
    fn otsu_splits_two_levels() {
        let mut hist = [0u64; 256];
        hist[20] = 100;
        hist[200] = 100;
        let t = otsu_threshold(&hist);
        assert!((20..200).contains(&t), "{t}");
    }

    #[test]
    fn local_threshold_follows_falling_light() {
        // Dark and light stripes whose brightness halves from left to right: one global
        // threshold would call the whole right half dark.
        let img = GrayImage::from_fn(200, 40, |x, _| {
            let light = 240 - x / 2;
            image::Luma([if (x / 5) % 2 == 0 {
                light as u8 / 4
            } else {
                light as u8
            }])
        });
        let b = binarize_local(&img);
        for x in [2, 7, 102, 107, 192, 197] {
            let expected = if (x / 5) % 2 == 0 { 0 } else { 255 };
            assert_eq!(b.get_pixel(x, 20).0[0], expected, "x = {x}");
        }
    }

    #[test]
    fn shrink_keeps_the_aspect_ratio() {
        let img = GrayImage::new(4000, 3000);
        assert_eq!(shrink(&img, 1600).dimensions(), (1600, 1200));
        assert_eq!(shrink(&img, 5000).dimensions(), (4000, 3000));
    }
}
