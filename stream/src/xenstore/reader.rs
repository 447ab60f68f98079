//! Reading xenstore records: each body decoded and checked for its layout,
//! then passed through the [`XsGrammar`] for the rules between records.

use std::io::Read;

use super::error::{XsError, XsRule, XsWarning};
use super::grammar::XsGrammar;
use super::record::{
    ConnSpec, Connection, DomainData, GlobalData, GlobalQuota, Node, Perm, PermKind, Quota,
    Transaction, Watch, XsHeader, XsRecord, XsRecordPos,
};
use super::{
    rec_type, NODE_ACCESS_READ, NODE_ACCESS_WRITTEN, PERM_FLAG_STALE, XS_DEFAULT_MAX_BODY_LEN,
    XS_FLAG_BIG_ENDIAN, XS_HEADER_LEN, XS_IDENT, XS_RECORD_HEADER_LEN, XS_VERSION_1, XS_VERSION_2,
};
use crate::input::{read_growing, read_upto};
use crate::wire::{padded_len, Endian};

/// How a [`XsReader`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XsReaderOptions {
    /// Offset of the stream in the whole input, for error offsets (e.g.
    /// when it is embedded in another stream).
    pub start_offset: u64,
    /// Largest `len` accepted; a longer record is refused with
    /// [`XsRule::RecordTooLong`] before anything is allocated for it.
    pub max_body_len: u32,
}

impl Default for XsReaderOptions {
    fn default() -> Self {
        XsReaderOptions {
            start_offset: 0,
            max_body_len: XS_DEFAULT_MAX_BODY_LEN,
        }
    }
}

/// Reads a xenstore stream record by record, holding one record at a time.
#[derive(Debug)]
pub struct XsReader<R> {
    inner: R,
    offset: u64,
    header: XsHeader,
    next_index: u64,
    grammar: XsGrammar,
    max_body_len: u32,
    ended: bool,
    warnings: Vec<XsWarning>,
}

/// Checks the 16 header octets.
fn parse_header(b: &[u8; 16], at: u64) -> Result<XsHeader, XsError> {
    if b[..8] != XS_IDENT {
        let i = b
            .iter()
            .zip(&XS_IDENT)
            .position(|(a, x)| a != x)
            .unwrap_or(0);
        return Err(XsError::header(at + i as u64, XsRule::BadMagic));
    }
    let version = Endian::Big.u32(b, 8);
    if version != XS_VERSION_1 && version != XS_VERSION_2 {
        return Err(XsError::header(at + 8, XsRule::UnsupportedVersion(version)));
    }
    let flags = Endian::Big.u32(b, 12);
    if flags & !XS_FLAG_BIG_ENDIAN != 0 {
        return Err(XsError::header(
            at + 12,
            XsRule::ReservedFlags(flags & !XS_FLAG_BIG_ENDIAN),
        ));
    }
    let endian = if flags & XS_FLAG_BIG_ENDIAN != 0 {
        Endian::Big
    } else {
        Endian::Little
    };
    Ok(XsHeader { version, endian })
}

impl<R: Read> XsReader<R> {
    /// Reads and checks the header at the start of `inner`.
    pub fn new(inner: R) -> Result<Self, XsError> {
        Self::with_options(inner, XsReaderOptions::default())
    }

    /// Like [`new`](Self::new), with options.
    pub fn with_options(mut inner: R, opts: XsReaderOptions) -> Result<Self, XsError> {
        let at = opts.start_offset;
        let mut b = [0u8; 16];
        let got = read_upto(&mut inner, &mut b).map_err(|e| XsError::io(at, None, &e))?;
        // A wrong ident says more about a short input than its length does.
        let cmp = got.min(8);
        if b[..cmp] != XS_IDENT[..cmp] {
            let i = b
                .iter()
                .zip(&XS_IDENT)
                .position(|(a, x)| a != x)
                .unwrap_or(0);
            return Err(XsError::header(at + i as u64, XsRule::BadMagic));
        }
        if got < b.len() {
            return Err(XsError::header(
                at + got as u64,
                XsRule::Truncated {
                    what: "the stream header",
                    needed: (b.len() - got) as u64,
                },
            ));
        }
        let header = parse_header(&b, at)?;
        let mut warnings = Vec::new();
        if header.endian == Endian::Big {
            warnings.push(XsWarning {
                offset: at + 12,
                record: None,
                message: "big-endian records: xenstored only reads its own host's byte order"
                    .into(),
            });
        }
        Ok(XsReader {
            inner,
            offset: at + XS_HEADER_LEN,
            header,
            next_index: 0,
            grammar: XsGrammar::new(header.version),
            max_body_len: opts.max_body_len,
            ended: false,
            warnings,
        })
    }

    /// The stream header.
    pub fn header(&self) -> &XsHeader {
        &self.header
    }

    /// Byte offset (in the whole input) of the next unread octet.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number of records read so far.
    pub fn records_read(&self) -> u64 {
        self.next_index
    }

    /// The rules between records, with what they have seen so far.
    pub fn grammar(&self) -> &XsGrammar {
        &self.grammar
    }

    /// Drains the warnings gathered so far (the grammar's included).
    pub fn take_warnings(&mut self) -> Vec<XsWarning> {
        let mut w = std::mem::take(&mut self.warnings);
        w.extend(self.grammar.take_warnings());
        w
    }

    /// Gives the byte source back.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads the next record; `None` once END has been returned.
    pub fn next_record(&mut self) -> Result<Option<(XsRecordPos, XsRecord)>, XsError> {
        if self.ended {
            return Ok(None);
        }
        let start = self.offset;
        let mut hb = [0u8; 8];
        let got = read_upto(&mut self.inner, &mut hb).map_err(|e| XsError::io(start, None, &e))?;
        if got == 0 {
            return Err(XsError::header(start, XsRule::MissingEnd));
        }
        let e = self.header.endian;
        let pos = XsRecordPos {
            offset: start,
            index: self.next_index,
            rtype: e.u32(&hb, 0),
            len: e.u32(&hb, 4),
        };
        if got < hb.len() {
            return Err(XsError::at(
                start + got as u64,
                pos,
                XsRule::Truncated {
                    what: "a record header",
                    needed: (hb.len() - got) as u64,
                },
            ));
        }
        // Type and length are refused before the body is read: neither an
        // unknown record nor an absurd length is worth reading.
        if pos.rtype > rec_type::WATCH_DATA_EXTENDED {
            return Err(XsError::at(
                start,
                pos,
                XsRule::UnknownRecordType(pos.rtype),
            ));
        }
        if pos.rtype == rec_type::WATCH_DATA_EXTENDED && self.header.version < XS_VERSION_2 {
            return Err(XsError::at(
                start,
                pos,
                XsRule::NotInVersion {
                    version: self.header.version,
                },
            ));
        }
        if pos.len > self.max_body_len {
            return Err(XsError::at(
                start + 4,
                pos,
                XsRule::RecordTooLong {
                    len: pos.len,
                    max: self.max_body_len,
                },
            ));
        }
        let body_start = start + XS_RECORD_HEADER_LEN;
        let len = u64::from(pos.len);
        let total = padded_len(len);
        let raw = read_growing(&mut self.inner, total)
            .map_err(|err| XsError::io(body_start, Some(pos), &err))?;
        if (raw.len() as u64) < total {
            let (what, needed) = if (raw.len() as u64) < len {
                ("a record body", len - raw.len() as u64)
            } else {
                ("record padding", total - raw.len() as u64)
            };
            return Err(XsError::at(
                body_start + raw.len() as u64,
                pos,
                XsRule::Truncated { what, needed },
            ));
        }
        if len % 8 != 0 {
            self.warn(
                start + 4,
                pos,
                format!(
                    "len {len} is not a multiple of 8: xenstored counts the padding in len and \
                     would misread the records after this one"
                ),
            );
        }
        let mut dec = Decoder {
            e,
            pos,
            body: &raw[..pos.len as usize],
            version: self.header.version,
            warnings: &mut self.warnings,
        };
        let (rec, used) = dec.decode()?;
        // The design says padding is written as zero and ignored when read;
        // it is reported, not refused.
        if raw[used..].iter().any(|&b| b != 0) {
            self.warn(
                body_start + used as u64,
                pos,
                "non-zero padding octets (ignored)".into(),
            );
        }
        self.grammar.on_record(pos, &rec)?;
        self.offset = start + pos.wire_len();
        self.next_index += 1;
        self.ended = rec == XsRecord::End;
        Ok(Some((pos, rec)))
    }

    /// After END: fails when any octet follows.
    pub fn expect_eof(&mut self) -> Result<(), XsError> {
        let mut b = [0u8; 1];
        let got =
            read_upto(&mut self.inner, &mut b).map_err(|e| XsError::io(self.offset, None, &e))?;
        if got != 0 {
            return Err(XsError::header(self.offset, XsRule::TrailingData));
        }
        Ok(())
    }

    fn warn(&mut self, offset: u64, pos: XsRecordPos, message: String) {
        self.warnings.push(XsWarning {
            offset,
            record: Some(pos),
            message,
        });
    }
}

/// Decodes one body, checking its layout.
struct Decoder<'a> {
    e: Endian,
    pos: XsRecordPos,
    body: &'a [u8],
    version: u32,
    warnings: &'a mut Vec<XsWarning>,
}

impl Decoder<'_> {
    fn body_off(&self, at: usize) -> u64 {
        self.pos.offset + XS_RECORD_HEADER_LEN + at as u64
    }

    fn fail<T>(&self, at: usize, rule: XsRule) -> Result<T, XsError> {
        Err(XsError::at(self.body_off(at), self.pos, rule))
    }

    fn warn(&mut self, at: usize, message: String) {
        let offset = self.body_off(at);
        self.warnings.push(XsWarning {
            offset,
            record: Some(self.pos),
            message,
        });
    }

    /// Fails unless the body holds at least `n` octets; reported at the
    /// `len` field, which is what is short.
    fn need(&self, n: u64) -> Result<(), XsError> {
        if (self.body.len() as u64) < n {
            return Err(XsError::at(
                self.pos.offset + 4,
                self.pos,
                XsRule::LengthOverrun {
                    needed: n,
                    len: self.pos.len,
                },
            ));
        }
        Ok(())
    }

    fn u16(&self, at: usize) -> u16 {
        self.e.u16(self.body, at)
    }

    fn u32(&self, at: usize) -> u32 {
        self.e.u32(self.body, at)
    }

    /// A NUL-terminated string of `len` octets (NUL counted) at `at`,
    /// returned without the NUL.
    fn string(&self, at: usize, len: usize, what: &'static str) -> Result<Vec<u8>, XsError> {
        let s = &self.body[at..at + len];
        match s.split_last() {
            Some((0, text)) => match text.iter().position(|&c| c == 0) {
                Some(i) => self.fail(at + i, XsRule::EmbeddedNul(what)),
                None => Ok(text.to_vec()),
            },
            // Point at the octet that should have been the NUL (or at the
            // string's place when it is empty).
            _ => self.fail(at + len.saturating_sub(1), XsRule::NotTerminated(what)),
        }
    }

    fn decode(&mut self) -> Result<(XsRecord, usize), XsError> {
        let (rec, used) = match self.pos.rtype {
            rec_type::END => (XsRecord::End, 0),
            rec_type::GLOBAL_DATA => {
                self.need(8)?;
                let g = GlobalData {
                    rw_socket_fd: self.u32(0) as i32,
                    evtchn_fd: self.u32(4) as i32,
                };
                (XsRecord::Global(g), 8)
            }
            rec_type::CONNECTION_DATA => self.connection()?,
            rec_type::WATCH_DATA | rec_type::WATCH_DATA_EXTENDED => self.watch()?,
            rec_type::TRANSACTION_DATA => {
                self.need(8)?;
                let t = Transaction {
                    conn_id: self.u32(0),
                    tx_id: self.u32(4),
                };
                (XsRecord::Transaction(t), 8)
            }
            rec_type::NODE_DATA => self.node()?,
            rec_type::GLOBAL_QUOTA_DATA => {
                self.need(4)?;
                let n_dom = self.u16(0);
                let n_glob = self.u16(2);
                let (mut all, used) = self.quotas(4, u32::from(n_dom) + u32::from(n_glob))?;
                let global = all.split_off(usize::from(n_dom));
                let q = GlobalQuota {
                    per_domain: all,
                    global,
                };
                (XsRecord::GlobalQuota(q), used)
            }
            rec_type::DOMAIN_DATA => {
                self.need(8)?;
                let domid = self.u16(0);
                let n = self.u16(2);
                let features = self.u32(4);
                if features != 0 && self.version < XS_VERSION_2 {
                    self.warn(
                        4,
                        format!("features {features:#x} in a version 1 stream (ignored)"),
                    );
                }
                let (quotas, used) = self.quotas(8, u32::from(n))?;
                let d = DomainData {
                    domid,
                    features,
                    quotas,
                };
                (XsRecord::Domain(d), used)
            }
            // The reader refuses other types from the record header.
            t => return self.fail(0, XsRule::UnknownRecordType(t)),
        };
        // xenstored counts up to 7 padding octets in len; more than that is
        // not padding.
        if self.body.len() - used >= 8 {
            return Err(XsError::at(
                self.pos.offset + 4,
                self.pos,
                XsRule::ExcessBody {
                    used: used as u64,
                    len: self.pos.len,
                },
            ));
        }
        Ok((rec, used))
    }

    fn connection(&mut self) -> Result<(XsRecord, usize), XsError> {
        self.need(24)?;
        let conn_id = self.u32(0);
        if conn_id == 0 {
            return self.fail(0, XsRule::ZeroConnId);
        }
        let ctype = self.u16(4);
        if self.u16(6) != 0 {
            self.warn(6, "non-zero pad after conn-type (ignored)".into());
        }
        let spec = match ctype {
            0 => ConnSpec::Ring {
                domid: self.u16(8),
                tdomid: self.u16(10),
                evtchn: self.u32(12),
            },
            1 => {
                if self.u32(12) != 0 {
                    self.warn(12, "non-zero pad after socket-fd (ignored)".into());
                }
                ConnSpec::Socket {
                    fd: self.u32(8) as i32,
                }
            }
            t => return self.fail(4, XsRule::UnknownConnType(t)),
        };
        let in_len = usize::from(self.u16(16));
        let resp = self.u16(18);
        let out_len = self.u32(20);
        if u32::from(resp) > out_len {
            return self.fail(18, XsRule::RespExceedsOut { resp, out: out_len });
        }
        let end = 24 + in_len as u64 + u64::from(out_len);
        self.need(end)?;
        let c = Connection {
            conn_id,
            spec,
            in_data: self.body[24..24 + in_len].to_vec(),
            out_resp_len: resp,
            out_data: self.body[24 + in_len..end as usize].to_vec(),
        };
        Ok((XsRecord::Connection(c), end as usize))
    }

    fn watch(&mut self) -> Result<(XsRecord, usize), XsError> {
        let extended = self.pos.rtype == rec_type::WATCH_DATA_EXTENDED;
        let fixed = if extended { 12 } else { 8 };
        self.need(fixed as u64)?;
        let conn_id = self.u32(0);
        let plen = usize::from(self.u16(4));
        let tlen = usize::from(self.u16(6));
        let depth = extended.then(|| self.u16(8));
        if extended && self.u16(10) != 0 {
            self.warn(10, "non-zero pad after depth (ignored)".into());
        }
        let end = fixed + plen + tlen;
        self.need(end as u64)?;
        let path = self.string(fixed, plen, "wpath")?;
        let token = self.string(fixed + plen, tlen, "token")?;
        let w = Watch {
            conn_id,
            path,
            token,
            depth,
        };
        Ok((XsRecord::Watch(w), end))
    }

    fn node(&mut self) -> Result<(XsRecord, usize), XsError> {
        self.need(16)?;
        let conn_id = self.u32(0);
        let tx_id = self.u32(4);
        let plen = usize::from(self.u16(8));
        let vlen = usize::from(self.u16(10));
        let access = self.u16(12);
        let nperm = self.u16(14);
        let perms_end = 16 + 4 * usize::from(nperm);
        let end = perms_end + plen + vlen;
        self.need(end as u64)?;
        let mut perms = Vec::with_capacity(usize::from(nperm));
        for i in 0..nperm {
            let at = 16 + 4 * usize::from(i);
            let letter = self.body[at];
            let Some(kind) = PermKind::from_letter(letter) else {
                return self.fail(
                    at,
                    XsRule::BadPerm {
                        index: i,
                        perm: letter,
                    },
                );
            };
            let flags = self.body[at + 1];
            if flags & !PERM_FLAG_STALE != 0 {
                self.warn(
                    at + 1,
                    format!("perm{} flags {flags:#04x}: undefined bits (ignored)", i + 1),
                );
            }
            perms.push(Perm {
                kind,
                flags,
                domid: self.u16(at + 2),
            });
        }
        let path = self.string(perms_end, plen, "node path")?;
        if !node_path_ok(&path) {
            return self.fail(
                perms_end,
                XsRule::BadNodePath(String::from_utf8_lossy(&path).into_owned()),
            );
        }
        let value = self.body[perms_end + plen..end].to_vec();
        if conn_id == 0 {
            if perms.is_empty() {
                return self.fail(14, XsRule::NoOwner);
            }
            if tx_id != 0 || access != 0 {
                self.warn(
                    4,
                    "committed node (conn-id 0) with a tx-id or access bits (ignored)".into(),
                );
            }
        } else {
            if access & !(NODE_ACCESS_READ | NODE_ACCESS_WRITTEN) != 0 {
                return self.fail(12, XsRule::ReservedAccessBits(access));
            }
            if perms.is_empty() && (access != 0 || !value.is_empty()) {
                return self.fail(14, XsRule::DeletedNodeNotEmpty);
            }
            if !perms.is_empty() && access == 0 {
                // Access 0 is how the design marks a deletion, yet there
                // are permissions: NoOwner would be wrong, so it is kept.
                self.warn(
                    12,
                    "access 0 (deleted) but perm-count is not 0: read as an existing node".into(),
                );
            }
        }
        let n = Node {
            conn_id,
            tx_id,
            access,
            perms,
            path,
            value,
        };
        Ok((XsRecord::Node(n), end))
    }

    /// `n` u32 values at `at`, then `n` NUL-terminated names; returns them
    /// and the octets used.
    fn quotas(&mut self, at: usize, n: u32) -> Result<(Vec<Quota>, usize), XsError> {
        let names_at = at as u64 + 4 * u64::from(n);
        self.need(names_at)?;
        let mut values = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            values.push(self.u32(at + 4 * i));
        }
        let mut quotas = Vec::with_capacity(n as usize);
        let mut p = names_at as usize;
        for (found, value) in (0u32..).zip(values) {
            let Some(nul) = self.body[p..].iter().position(|&c| c == 0) else {
                return self.fail(p, XsRule::QuotaNames { expected: n, found });
            };
            quotas.push(Quota {
                name: self.body[p..p + nul].to_vec(),
                value,
            });
            p += nul + 1;
        }
        Ok((quotas, p))
    }
}

/// Absolute with no empty component ("/" alone is the root), or special.
fn node_path_ok(p: &[u8]) -> bool {
    match p.first() {
        Some(b'@') => p.len() > 1,
        Some(b'/') => p == b"/" || (!p.ends_with(b"/") && !p.windows(2).any(|w| w == b"//")),
        _ => false,
    }
}

/// A whole stream, read into memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XsStream {
    /// The header.
    pub header: XsHeader,
    /// Every record before END (END itself is not included).
    pub records: Vec<XsRecord>,
    /// Warnings, in stream order.
    pub warnings: Vec<XsWarning>,
}

/// Reads a whole stream, checking every rule and that nothing follows END.
/// It holds all records; use [`XsReader`] to stream a large input.
pub fn read_stream<R: Read>(input: R) -> Result<XsStream, XsError> {
    let mut r = XsReader::new(input)?;
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    while let Some((_, rec)) = r.next_record()? {
        warnings.extend(r.take_warnings());
        if rec != XsRecord::End {
            records.push(rec);
        }
    }
    r.expect_eof()?;
    warnings.extend(r.take_warnings());
    Ok(XsStream {
        header: *r.header(),
        records,
        warnings,
    })
}
