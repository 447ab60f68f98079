//! The saving toolstack's word size, from the image's first octets.
//!
//! Nothing in a legacy image names its layout, but the two readings of the
//! same octets disagree early: a PV image carries `~0UL` right after
//! `p2m_size` (octets 4-7 all ones for a 32-bit toolstack, 8-15 for a
//! 64-bit one, and both cannot hold with the "vcpu" block id that follows
//! a 32-bit signature); an HVM image's `p2m_size` is at most 2^28, so read
//! at 64 bits its octets 4-7 are zero, which read at 32 bits is the body's
//! end marker before any VCPU_INFO chunk, and read at 64 bits a 32-bit
//! image's first marker lands in `p2m_size`'s high half. [`detect_width`]
//! runs the [reader](super::LegacyReader) under both widths over a prefix:
//! a reading that breaks a rule inside the prefix is out; running out of
//! prefix is no evidence either way.

use super::error::{LegacyError, LegacyErrorKind};
use super::{Guest, LegacyReader, Width};

/// Octets [`detect_width`] needs to decide every image that can decide it
/// (16 for PV, 8 for HVM).
pub const DECISIVE_PREFIX: usize = 16;

/// The outcome of [`detect_width`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// One reading holds; the other breaks `rejected`.
    Decided {
        /// The width that reads the prefix without error.
        width: Width,
        /// Why the other width is wrong.
        rejected: LegacyError,
    },
    /// Both readings hold over the whole prefix: the octets do not decide.
    Ambiguous {
        /// Octets examined.
        examined: usize,
    },
    /// Neither reading holds: not a legacy image of this guest kind.
    Neither {
        /// The 32-bit reading's error.
        as32: LegacyError,
        /// The 64-bit reading's error.
        as64: LegacyError,
    },
}

impl Detection {
    /// The decided width.
    pub fn width(&self) -> Option<Width> {
        match self {
            Detection::Decided { width, .. } => Some(*width),
            _ => None,
        }
    }

    /// One line for the user: what was decided and why, or why not.
    pub fn explain(&self, guest: Guest) -> String {
        match self {
            Detection::Decided { width, rejected } => format!(
                "{width} toolstack: read as {}, the {guest} image breaks a rule at {rejected}",
                width.other()
            ),
            Detection::Ambiguous { examined } => format!(
                "cannot tell the toolstack width: the first {examined} octets read as a {guest} \
                 image at both 32 and 64 bits; give --width 32 or --width 64"
            ),
            Detection::Neither { as32, as64 } => format!(
                "not a legacy {guest} image at either width: as 32-bit, {as32}; as 64-bit, {as64}"
            ),
        }
    }
}

/// Reads `prefix` (the image's first octets, however many the caller has)
/// as a `guest` image under both widths.
pub fn detect_width(prefix: &[u8], guest: Guest) -> Detection {
    let as32 = try_width(prefix, guest, Width::Bits32);
    let as64 = try_width(prefix, guest, Width::Bits64);
    match (as32, as64) {
        (None, None) => Detection::Ambiguous {
            examined: prefix.len(),
        },
        (None, Some(e)) => Detection::Decided {
            width: Width::Bits32,
            rejected: e,
        },
        (Some(e), None) => Detection::Decided {
            width: Width::Bits64,
            rejected: e,
        },
        (Some(as32), Some(as64)) => Detection::Neither { as32, as64 },
    }
}

/// The first rule `prefix` breaks when read at `width`; `None` when it
/// reads cleanly until the prefix (or the image) ends.
fn try_width(prefix: &[u8], guest: Guest, width: Width) -> Option<LegacyError> {
    let mut r = LegacyReader::new(prefix, width, guest, 0);
    loop {
        match r.next_item() {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(e) if matches!(e.kind, LegacyErrorKind::Truncated { .. }) => return None,
            Err(e) => return Some(e),
        }
    }
}
