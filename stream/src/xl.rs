//! The `xl` save-file header (Xen 4.17 `tools/xl`), which precedes the libxl
//! stream in files written by `xl save` and in `xl migrate` streams.
//!
//! ```text
//! 0   magic[32]          "Xen saved domain, xl format\n \0 \r"
//! 32  byteorder  u32     0x01020304 in the saving host's byte order
//! 36  mandatory_flags    bit 0 config is JSON, bit 1 libxl v2 stream follows;
//!                        any other bit: the reader must refuse the file
//! 40  optional_flags     (xl writes 0 and ignores it)
//! 44  optional_data_len  octets of optional data that follow
//! 48  optional data:     u32 config_len, config_len octets of config,
//!                        then anything a newer xl appended (skipped)
//! ```
//!
//! All u32 fields, including `config_len`, are in the order `byteorder`
//! reveals. xl itself only accepts its host's order; this reader accepts
//! both and reports a big-endian file as a warning.

use std::fmt;
use std::io::{self, Read, Write};

use crate::input::{read_growing, read_upto};
use crate::wire::Endian;

/// The 32-octet magic at the start of an xl save file.
pub const XL_MAGIC: [u8; 32] = *b"Xen saved domain, xl format\n \0 \r";
/// The `byteorder` value, as written in the saver's byte order.
pub const XL_BYTEORDER: u32 = 0x0102_0304;
/// Mandatory flag: the config is libxl JSON (else xl config-file text).
pub const XL_MANDATORY_JSON: u32 = 1 << 0;
/// Mandatory flag: a libxl migration v2 stream follows (else a legacy one).
pub const XL_MANDATORY_STREAM_V2: u32 = 1 << 1;
/// Mandatory flags this reader understands.
pub const XL_MANDATORY_KNOWN: u32 = XL_MANDATORY_JSON | XL_MANDATORY_STREAM_V2;
/// Length of the fixed part of the header.
pub const XL_FIXED_LEN: u64 = 48;

/// The optional data block: the domain config and any unknown tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlOptionalData {
    /// The domain configuration (JSON with a trailing NUL when xl wrote it
    /// with the JSON flag); may be empty.
    pub config: Vec<u8>,
    /// Octets after the config that this reader does not understand; xl
    /// skips them.
    pub tail: Vec<u8>,
}

/// A decoded xl save-file header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlHeader {
    /// Byte order of the u32 fields.
    pub byte_order: Endian,
    /// Mandatory flags (only known bits once read).
    pub mandatory_flags: u32,
    /// Optional flags.
    pub optional_flags: u32,
    /// The optional data, absent when `optional_data_len` is 0.
    pub optional: Option<XlOptionalData>,
}

impl XlHeader {
    /// The header `xl save` writes for a v2 stream with a JSON config
    /// (`config` should end with a NUL, as xl's does).
    pub fn new_json(config: Vec<u8>) -> Self {
        XlHeader {
            byte_order: Endian::Little,
            mandatory_flags: XL_MANDATORY_STREAM_V2
                | if config.is_empty() {
                    0
                } else {
                    XL_MANDATORY_JSON
                },
            optional_flags: 0,
            optional: Some(XlOptionalData {
                config,
                tail: Vec::new(),
            }),
        }
    }

    /// Whether a libxl v2 stream follows (else a pre-Xen-4.6 legacy stream).
    pub fn stream_v2(&self) -> bool {
        self.mandatory_flags & XL_MANDATORY_STREAM_V2 != 0
    }

    /// Whether the config is libxl JSON.
    pub fn config_json(&self) -> bool {
        self.mandatory_flags & XL_MANDATORY_JSON != 0
    }

    /// The domain config, if the file carries one.
    pub fn config(&self) -> Option<&[u8]> {
        self.optional.as_ref().map(|o| o.config.as_slice())
    }

    /// Length of the optional data block.
    pub fn optional_data_len(&self) -> u64 {
        self.optional
            .as_ref()
            .map_or(0, |o| 4 + o.config.len() as u64 + o.tail.len() as u64)
    }

    /// Total header length in octets: where the libxl stream starts.
    pub fn encoded_len(&self) -> u64 {
        XL_FIXED_LEN + self.optional_data_len()
    }

    /// Encodes the header and its optional data.
    pub fn to_bytes(&self) -> io::Result<Vec<u8>> {
        let e = self.byte_order;
        let optlen = u32::try_from(self.optional_data_len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "xl optional data over 4 GiB")
        })?;
        let mut out = Vec::with_capacity(self.encoded_len() as usize);
        out.extend_from_slice(&XL_MAGIC);
        e.put_u32(&mut out, XL_BYTEORDER);
        e.put_u32(&mut out, self.mandatory_flags);
        e.put_u32(&mut out, self.optional_flags);
        e.put_u32(&mut out, optlen);
        if let Some(o) = &self.optional {
            // Fits: optional_data_len already does.
            e.put_u32(&mut out, o.config.len() as u32);
            out.extend_from_slice(&o.config);
            out.extend_from_slice(&o.tail);
        }
        Ok(out)
    }

    /// Writes the header to `w`.
    pub fn write_to<W: Write>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(&self.to_bytes()?)
    }

    /// Reads and checks a header from `r`, leaving `r` at the first octet
    /// of the stream that follows.
    pub fn read_from<R: Read>(r: &mut R) -> Result<Self, XlError> {
        let mut fixed = [0u8; XL_FIXED_LEN as usize];
        let got = read_upto(r, &mut fixed).map_err(|e| XlError::io(0, e))?;
        // Report a wrong magic before a short read: a short file that is not
        // an xl file at all is better described by its magic.
        let magic_got = got.min(32);
        if fixed[..magic_got] != XL_MAGIC[..magic_got] {
            let at = fixed
                .iter()
                .zip(XL_MAGIC.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(XlError::new(at as u64, XlErrorKind::BadMagic));
        }
        if got < fixed.len() {
            return Err(XlError::new(
                got as u64,
                XlErrorKind::Truncated {
                    what: "the fixed header",
                    needed: (fixed.len() - got) as u64,
                },
            ));
        }
        let byte_order = if Endian::Little.u32(&fixed, 32) == XL_BYTEORDER {
            Endian::Little
        } else if Endian::Big.u32(&fixed, 32) == XL_BYTEORDER {
            Endian::Big
        } else {
            return Err(XlError::new(
                32,
                XlErrorKind::BadByteOrder(Endian::Little.u32(&fixed, 32)),
            ));
        };
        let field = |at: usize| byte_order.u32(&fixed, at);
        let mandatory_flags = field(36);
        let optional_flags = field(40);
        let optional_data_len = field(44);
        if mandatory_flags & !XL_MANDATORY_KNOWN != 0 {
            return Err(XlError::new(
                36,
                XlErrorKind::UnknownMandatoryFlags(mandatory_flags & !XL_MANDATORY_KNOWN),
            ));
        }
        if optional_data_len == 0 {
            return Ok(XlHeader {
                byte_order,
                mandatory_flags,
                optional_flags,
                optional: None,
            });
        }
        if optional_data_len < 4 {
            return Err(XlError::new(
                44,
                XlErrorKind::OptionalDataTooShort(optional_data_len),
            ));
        }
        let mut lenb = [0u8; 4];
        let got = read_upto(r, &mut lenb).map_err(|e| XlError::io(XL_FIXED_LEN, e))?;
        if got < 4 {
            return Err(XlError::new(
                XL_FIXED_LEN + got as u64,
                XlErrorKind::Truncated {
                    what: "the optional data",
                    needed: u64::from(optional_data_len) - got as u64,
                },
            ));
        }
        let config_len = byte_order.u32(&lenb, 0);
        let avail = optional_data_len - 4;
        if config_len > avail {
            return Err(XlError::new(
                XL_FIXED_LEN,
                XlErrorKind::ConfigExceedsOptionalData {
                    config_len,
                    available: avail,
                },
            ));
        }
        let rest =
            read_growing(r, u64::from(avail)).map_err(|e| XlError::io(XL_FIXED_LEN + 4, e))?;
        if rest.len() < avail as usize {
            return Err(XlError::new(
                XL_FIXED_LEN + 4 + rest.len() as u64,
                XlErrorKind::Truncated {
                    what: "the optional data",
                    needed: u64::from(avail) - rest.len() as u64,
                },
            ));
        }
        let mut config = rest;
        let tail = config.split_off(config_len as usize);
        Ok(XlHeader {
            byte_order,
            mandatory_flags,
            optional_flags,
            optional: Some(XlOptionalData { config, tail }),
        })
    }

    /// Legal but unusual properties of this header, as messages.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.byte_order == Endian::Big {
            w.push("big-endian xl header: xl on x86 refuses it (\"wrong byte order\")".into());
        }
        if self.optional_flags != 0 {
            w.push(format!(
                "optional_flags {:#x} set; xl ignores them",
                self.optional_flags
            ));
        }
        match &self.optional {
            None => w.push("no optional data: the file carries no domain config".into()),
            Some(o) => {
                if o.config.is_empty() && self.config_json() {
                    w.push("JSON flag set but the config is empty".into());
                }
                if self.config_json() && !o.config.is_empty() && o.config.last() != Some(&0) {
                    w.push("JSON config is not NUL terminated (xl writes the NUL)".into());
                }
                if !o.tail.is_empty() {
                    w.push(format!(
                        "{} octets of unknown optional data after the config (skipped)",
                        o.tail.len()
                    ));
                }
            }
        }
        w
    }
}

/// Why an xl header is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XlErrorKind {
    /// The magic is not xl's.
    BadMagic,
    /// `byteorder` is 0x01020304 in neither byte order (value read LE).
    BadByteOrder(u32),
    /// Mandatory flags this reader does not know: xl refuses the file.
    UnknownMandatoryFlags(u32),
    /// Optional data present but too short for its `config_len` field.
    OptionalDataTooShort(u32),
    /// `config_len` larger than the optional data after it.
    ConfigExceedsOptionalData {
        /// Declared config length.
        config_len: u32,
        /// Octets of optional data after the length field.
        available: u32,
    },
    /// The input ended inside the header.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Octets missing.
        needed: u64,
    },
    /// An I/O error other than end of input.
    Io(String),
}

impl fmt::Display for XlErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use XlErrorKind::*;
        match self {
            BadMagic => write!(f, "bad magic: not an xl save file"),
            BadByteOrder(v) => write!(f, "byteorder field {v:#010x} is not 0x01020304 in either byte order"),
            UnknownMandatoryFlags(v) => write!(f, "unknown mandatory flags {v:#x}: xl must refuse this file"),
            OptionalDataTooShort(n) => {
                write!(f, "optional_data_len {n} is too short for the 4-octet config length")
            }
            ConfigExceedsOptionalData { config_len, available } => write!(
                f,
                "config length {config_len} exceeds the {available} octets of optional data after it"
            ),
            Truncated { what, needed } => {
                write!(f, "truncated: input ends inside {what} ({needed} more octets expected)")
            }
            Io(s) => write!(f, "read error: {s}"),
        }
    }
}

/// An invalid xl header, with the offset of the offending octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlError {
    /// Byte offset from the start of the file.
    pub offset: u64,
    /// The rule broken.
    pub kind: XlErrorKind,
}

impl XlError {
    fn new(offset: u64, kind: XlErrorKind) -> Self {
        XlError { offset, kind }
    }

    fn io(offset: u64, e: io::Error) -> Self {
        XlError::new(offset, XlErrorKind::Io(e.to_string()))
    }
}

impl fmt::Display for XlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offset {}, xl header: {}", self.offset, self.kind)
    }
}

impl std::error::Error for XlError {}
