//! Legacy images on the restore's input: with the setting on, a stream
//! that does not start with the v2 image header is read as an image of
//! Xen 4.5 or earlier and converted in-process by the codec
//! ([`Converted`]), the way libxl runs `convert-legacy-stream` when an `xl`
//! header says a legacy image follows, but with no helper process. The
//! guest kind comes from the domain the toolstack created; the toolstack
//! width is given, or read from the image's first octets.
//!
//! The conversion reads exactly the image's libxc part, so after an HVM
//! image the device model record is still on the input for the toolstack.

use std::io::{Cursor, Read};

use super::RestoreParams;
use super::{restore_domain_with_back_channel, RestoreCallbacks, RestoreError, RestoreOutputs};
use crate::hv::{DomId, Hypervisor};
use crate::log::Level;
use crate::stream::legacy::{
    detect_width, ConvertOptions, Converted, Guest, LegacyReader, OutputFormat, Trailer, Width,
    DECISIVE_PREFIX,
};
use crate::stream::{Version, IHDR_ID, IHDR_MARKER};

/// Whether the restore accepts legacy images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegacyImages {
    /// Only v2/v3 streams (libxenguest's behaviour, the default).
    #[default]
    Refuse,
    /// Legacy images too, the toolstack width read from the first octets.
    Detect,
    /// Legacy images too, from a toolstack of this width.
    Width(Width),
}

/// [`restore_domain_with_back_channel`], also accepting a legacy image as
/// `legacy` says.
pub fn restore_domain_accepting_legacy<H: Hypervisor, R: Read>(
    hv: &H,
    domid: DomId,
    io: &mut R,
    back: Option<&mut dyn std::io::Write>,
    params: &RestoreParams,
    callbacks: &mut dyn RestoreCallbacks,
    legacy: LegacyImages,
) -> Result<RestoreOutputs, RestoreError> {
    if legacy == LegacyImages::Refuse {
        return restore_domain_with_back_channel(hv, domid, io, back, params, callbacks);
    }
    let mut head = Vec::with_capacity(DECISIVE_PREFIX);
    io.by_ref()
        .take(DECISIVE_PREFIX as u64)
        .read_to_end(&mut head)
        .map_err(|e| RestoreError::Legacy(format!("reading the stream's first octets: {e}")))?;
    let mut input = Cursor::new(head.clone()).chain(io);
    // Too short for either: the v2 reader names what is missing.
    if is_v2(&head) || head.len() < 12 {
        return restore_domain_with_back_channel(hv, domid, &mut input, back, params, callbacks);
    }
    let info = hv.domain_info(domid)?;
    if info.domid != domid {
        return Err(RestoreError::NoSuchDomain(domid));
    }
    let guest = if info.hvm { Guest::Hvm } else { Guest::Pv };
    let width = match legacy {
        LegacyImages::Width(w) => w,
        _ => {
            let d = detect_width(&head, guest);
            d.width()
                .ok_or_else(|| RestoreError::Legacy(d.explain(guest)))?
        }
    };
    crate::log::message(
        Level::Info,
        None,
        &format!(
            "xcmig: the stream is a legacy (Xen 4.5 or earlier) {guest} image from a {width} \
             toolstack; converting it in-process"
        ),
    );
    let opts = ConvertOptions {
        width,
        guest,
        format: OutputFormat::Libxc,
        version: Version::V3,
        xl: false,
        trailer: Trailer::Stop,
    };
    let mut converted = Converted::new(LegacyReader::new(input, width, guest, 0), &opts);
    let r = restore_domain_with_back_channel(hv, domid, &mut converted, back, params, callbacks);
    // A conversion error reached the engine as a read error; name it.
    match (r, converted.take_error()) {
        (Err(_), Some(e)) => Err(RestoreError::Legacy(e.to_string())),
        (r, _) => r,
    }
}

/// The v2/v3 image header's marker and id.
fn is_v2(head: &[u8]) -> bool {
    head.len() >= 12
        && head[..8] == IHDR_MARKER.to_be_bytes()
        && head[8..12] == IHDR_ID.to_be_bytes()
}
