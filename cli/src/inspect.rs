//! `xcmig inspect`: what a stream holds, as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};

use serde::Serialize;
use xcmig_stream::libxl::{LibxlHeader, LIBXL_OPT_BIG_ENDIAN};
use xcmig_stream::xl::XlHeader;
use xcmig_stream::{DomainHeader, Endian, ImageHeader, PageType, PfnEntry};

use crate::walk::{Ending, Format, Layer, RecordInfo, Visitor};

/// The xl header, for output.
#[derive(Debug, Serialize)]
pub struct XlInfo {
    byte_order: &'static str,
    mandatory_flags: u32,
    optional_flags: u32,
    json_config: bool,
    stream_v2: bool,
    config_bytes: Option<u64>,
    optional_tail_bytes: u64,
    header_bytes: u64,
}

/// The libxl header, for output.
#[derive(Debug, Serialize)]
pub struct LibxlInfo {
    offset: u64,
    version: u32,
    options: u32,
    big_endian: bool,
    legacy: bool,
}

/// The libxc headers, for output.
#[derive(Debug, Serialize)]
pub struct LibxcInfo {
    offset: u64,
    version: u32,
    big_endian: bool,
    domain_type: String,
    page_shift: u16,
    xen_major: u32,
    xen_minor: u32,
    legacy_converted: bool,
}

/// Count and octets of one record type.
#[derive(Debug, Default, Serialize)]
pub struct TypeStats {
    layer: Option<Layer>,
    name: String,
    code: u32,
    count: u64,
    bytes: u64,
}

/// PAGE_DATA entries.
#[derive(Debug, Default, Serialize)]
pub struct PageStats {
    /// Entries across every PAGE_DATA record.
    entries: u64,
    /// Entries that carry a page of data.
    data_pages: u64,
    /// Entries per PFINFO type name.
    by_type: BTreeMap<&'static str, u64>,
    pfn_min: Option<u64>,
    pfn_max: Option<u64>,
}

/// One record for `-v`.
#[derive(Debug, Serialize)]
pub struct RecordLine {
    layer: Layer,
    offset: u64,
    index: u64,
    name: String,
    code: u32,
    body_length: u64,
    summary: String,
}

/// Everything `inspect` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    format: Format,
    valid: bool,
    error: Option<String>,
    /// Octets of the whole stream; null when it is invalid.
    bytes: Option<u64>,
    ending: Option<Ending>,
    xl: Option<XlInfo>,
    libxl: Option<LibxlInfo>,
    libxc: Option<LibxcInfo>,
    record_types: Vec<TypeStats>,
    pages: PageStats,
    checkpoints_libxc: u64,
    checkpoints_libxl: u64,
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<Vec<RecordLine>>,
    #[serde(skip)]
    by_type: BTreeMap<(Layer, u32), TypeStats>,
    #[serde(skip)]
    page_counts: [u64; 16],
    #[serde(skip)]
    verbose: bool,
    #[serde(skip)]
    print_records: bool,
    #[serde(skip)]
    header_printed: bool,
    #[serde(skip)]
    out: Option<io::BufWriter<io::Stdout>>,
    #[serde(skip)]
    echo_warnings: bool,
}

impl Report {
    /// An empty report. `verbose` lists every record: printed to stdout as
    /// it comes for text output (so a huge stream needs no memory for it),
    /// kept for JSON. `echo_warnings` also prints warnings to stderr.
    pub fn new(format: Format, verbose: bool, json: bool, echo_warnings: bool) -> Self {
        Report {
            format,
            valid: false,
            error: None,
            bytes: None,
            ending: None,
            xl: None,
            libxl: None,
            libxc: None,
            record_types: Vec::new(),
            pages: PageStats::default(),
            checkpoints_libxc: 0,
            checkpoints_libxl: 0,
            warnings: Vec::new(),
            records: (verbose && json).then(Vec::new),
            by_type: BTreeMap::new(),
            page_counts: [0; 16],
            verbose,
            print_records: verbose && !json,
            header_printed: false,
            out: None,
            echo_warnings,
        }
    }

    /// Records the outcome and folds the counters into the output fields.
    pub fn finish(&mut self, result: Result<(u64, Ending), String>) {
        if let Some(mut out) = self.out.take() {
            let _ = out.flush();
        }
        match result {
            Ok((bytes, ending)) => {
                self.valid = true;
                self.bytes = Some(bytes);
                self.ending = Some(ending);
            }
            Err(line) => {
                self.error = Some(line);
            }
        }
        self.record_types = std::mem::take(&mut self.by_type).into_values().collect();
        for t in PageType::ALL {
            let n = self.page_counts[usize::from(t.bits())];
            if n > 0 {
                self.pages.by_type.insert(t.name(), n);
            }
        }
    }

    /// The text form.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "format: {}", self.format);
        if let Some(x) = &self.xl {
            let _ = writeln!(
                o,
                "xl header: {} endian, mandatory flags {:#x}{}{}, optional flags {:#x}, config {}, {} header octets",
                x.byte_order,
                x.mandatory_flags,
                if x.json_config { " JSON" } else { "" },
                if x.stream_v2 { " STREAMv2" } else { "" },
                x.optional_flags,
                x.config_bytes.map_or("absent".to_string(), |n| format!("{n} octets")),
                x.header_bytes
            );
        }
        if let Some(l) = &self.libxl {
            let _ = writeln!(
                o,
                "libxl header at {}: version {}, {} endian{}",
                l.offset,
                l.version,
                if l.big_endian { "big" } else { "little" },
                if l.legacy {
                    ", converted from legacy"
                } else {
                    ""
                }
            );
        }
        if let Some(c) = &self.libxc {
            let _ = writeln!(
                o,
                "libxc header at {}: version {}, {} endian, {}, page_shift {}, saved by Xen {}.{}{}",
                c.offset,
                c.version,
                if c.big_endian { "big" } else { "little" },
                c.domain_type,
                c.page_shift,
                c.xen_major,
                c.xen_minor,
                if c.legacy_converted { " (converted from legacy)" } else { "" }
            );
        }
        let _ = writeln!(o, "records:");
        let _ = writeln!(
            o,
            "  {:<6} {:<26} {:>10} {:>16}",
            "layer", "type", "count", "octets"
        );
        for t in &self.record_types {
            let layer = t.layer.map_or(String::new(), |l| l.to_string());
            let _ = writeln!(
                o,
                "  {:<6} {:<26} {:>10} {:>16}",
                layer, t.name, t.count, t.bytes
            );
        }
        let p = &self.pages;
        let _ = write!(
            o,
            "pages: {} entries, {} with data",
            p.entries, p.data_pages
        );
        if let (Some(lo), Some(hi)) = (p.pfn_min, p.pfn_max) {
            let _ = write!(o, ", pfn range {lo:#x}-{hi:#x}");
        }
        let _ = writeln!(o);
        for (name, n) in &p.by_type {
            let _ = writeln!(o, "  {name:<10} {n:>12}");
        }
        let _ = writeln!(
            o,
            "checkpoints: {} (libxc CHECKPOINT), {} (libxl CHECKPOINT_END)",
            self.checkpoints_libxc, self.checkpoints_libxl
        );
        match (&self.ending, &self.error, self.bytes) {
            (Some(Ending::End), _, Some(n)) => {
                let _ = writeln!(o, "end: END record, {n} octets");
            }
            (Some(Ending::EofAfterCheckpoint), _, Some(n)) => {
                let _ = writeln!(o, "end: EOF after a complete checkpoint, {n} octets");
            }
            (_, Some(e), _) => {
                let _ = writeln!(o, "invalid: {e}");
            }
            _ => {}
        }
        let _ = writeln!(o, "warnings: {}", self.warnings.len());
        o
    }
}

impl Visitor for Report {
    fn wants_summaries(&self) -> bool {
        self.verbose
    }

    fn xl_header(&mut self, h: &XlHeader) {
        self.xl = Some(XlInfo {
            byte_order: match h.byte_order {
                Endian::Little => "little",
                Endian::Big => "big",
            },
            mandatory_flags: h.mandatory_flags,
            optional_flags: h.optional_flags,
            json_config: h.config_json(),
            stream_v2: h.stream_v2(),
            config_bytes: h.config().map(|c| c.len() as u64),
            optional_tail_bytes: h.optional.as_ref().map_or(0, |o| o.tail.len() as u64),
            header_bytes: h.encoded_len(),
        });
    }

    fn libxl_header(&mut self, offset: u64, h: &LibxlHeader) {
        self.libxl = Some(LibxlInfo {
            offset,
            version: h.version,
            options: h.options,
            big_endian: h.options & LIBXL_OPT_BIG_ENDIAN != 0,
            legacy: h.legacy(),
        });
    }

    fn libxc_headers(&mut self, offset: u64, ih: &ImageHeader, dh: &DomainHeader) {
        self.libxc = Some(LibxcInfo {
            offset,
            version: ih.version.number(),
            big_endian: ih.endian == Endian::Big,
            domain_type: dh.domain_type.to_string(),
            page_shift: dh.page_shift,
            xen_major: dh.xen_major,
            xen_minor: dh.xen_minor,
            legacy_converted: dh.is_legacy_converted(),
        });
    }

    fn record(&mut self, r: &RecordInfo) {
        let t = self
            .by_type
            .entry((r.layer, r.code))
            .or_insert_with(|| TypeStats {
                layer: Some(r.layer),
                name: r.name.clone(),
                code: r.code,
                ..TypeStats::default()
            });
        t.count += 1;
        t.bytes += r.wire_len;
        if self.print_records {
            let out = self
                .out
                .get_or_insert_with(|| io::BufWriter::with_capacity(1 << 16, io::stdout()));
            if !self.header_printed {
                self.header_printed = true;
                let _ = writeln!(
                    out,
                    "{:>14} {:<6} {:>8} {:<26} {:>10}  summary",
                    "offset", "layer", "index", "type", "length"
                );
            }
            let _ = writeln!(
                out,
                "{:>14} {:<6} {:>8} {:<26} {:>10}  {}",
                r.offset,
                r.layer,
                r.index,
                r.name,
                r.body_len,
                r.summary.as_deref().unwrap_or("")
            );
        }
        if let Some(list) = &mut self.records {
            list.push(RecordLine {
                layer: r.layer,
                offset: r.offset,
                index: r.index,
                name: r.name.clone(),
                code: r.code,
                body_length: r.body_len,
                summary: r.summary.clone().unwrap_or_default(),
            });
        }
    }

    fn pages(&mut self, entries: &[PfnEntry]) {
        let p = &mut self.pages;
        p.entries += entries.len() as u64;
        let mut lo = p.pfn_min.unwrap_or(u64::MAX);
        let mut hi = p.pfn_max.unwrap_or(0);
        for e in entries {
            self.page_counts[usize::from(e.page_type.bits() & 0xf)] += 1;
            if e.page_type.has_data() {
                p.data_pages += 1;
            }
            lo = lo.min(e.pfn);
            hi = hi.max(e.pfn);
        }
        if !entries.is_empty() {
            p.pfn_min = Some(lo);
            p.pfn_max = Some(hi);
        }
    }

    fn warning(&mut self, w: &str) {
        if self.echo_warnings {
            eprintln!("warning: {w}");
        }
        self.warnings.push(w.to_string());
    }

    fn checkpoints(&mut self, libxc: u64, libxl: u64) {
        self.checkpoints_libxc = libxc;
        self.checkpoints_libxl = libxl;
    }
}
