//! The wire base every codec of the crate shares: byte order with explicit
//! field reads and writes, and the 8-octet record alignment that libxc and
//! libxl records both use.

/// Byte order of multi-octet fields: of the libxc domain header and
/// records, of libxl records and of the `xl` save-file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endian {
    /// Least significant octet first (every x86 and Arm image).
    Little,
    /// Most significant octet first.
    Big,
}

impl Endian {
    /// Decodes a `u16` at `off` of `b` (caller guarantees the bounds).
    pub(crate) fn u16(self, b: &[u8], off: usize) -> u16 {
        let a = [b[off], b[off + 1]];
        match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        }
    }

    /// Decodes a `u32` at `off` of `b` (caller guarantees the bounds).
    pub(crate) fn u32(self, b: &[u8], off: usize) -> u32 {
        let a = [b[off], b[off + 1], b[off + 2], b[off + 3]];
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }

    /// Decodes a `u64` at `off` of `b` (caller guarantees the bounds).
    pub(crate) fn u64(self, b: &[u8], off: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[off..off + 8]);
        match self {
            Endian::Little => u64::from_le_bytes(a),
            Endian::Big => u64::from_be_bytes(a),
        }
    }

    /// Appends `v` to `out` in this byte order.
    pub(crate) fn put_u16(self, out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        });
    }

    /// Appends `v` to `out` in this byte order.
    pub(crate) fn put_u32(self, out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        });
    }

    /// Appends `v` to `out` in this byte order.
    pub(crate) fn put_u64(self, out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        });
    }
}

/// Rounds a body length up to the 8-octet record alignment.
pub(crate) fn padded_len(len: u64) -> u64 {
    (len + 7) & !7
}
