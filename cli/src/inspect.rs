//! `xcmig inspect`: what a stream holds, as text or JSON.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write as _};

use serde::Serialize;
use xcmig_stream::libxl::{LibxlHeader, LIBXL_OPT_BIG_ENDIAN};
use xcmig_stream::xl::XlHeader;
use xcmig_stream::{DomainHeader, Endian, ImageHeader, PageType, PfnEntry, Record};

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

/// One layer of the file, outermost first: `xl`, `libxl`, `libxc`.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    /// "xl", "libxl" or "libxc".
    layer: &'static str,
    /// Where its header starts.
    offset: u64,
    /// The stream version (null for the xl header, which has none).
    version: Option<u32>,
    /// xl only: octets of the domain config (null when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    config_bytes: Option<u64>,
    /// xl only: whether the config is libxl JSON (mandatory flag bit 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    config_json: Option<bool>,
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

/// The version of the JSON output's layout: raised when a member is removed
/// or changes meaning (documented in xcmig.1).
pub const SCHEMA_VERSION: u32 = 1;

/// PAGE_DATA entries.
#[derive(Debug, Default, Serialize)]
pub struct PageStats {
    /// Entries across every PAGE_DATA record.
    entries: u64,
    /// Entries that carry a page of data.
    data_pages: u64,
    /// XALLOC entries: pages allocated without data, which is how a saver
    /// sends a zero page (xcmig elides zero pages never sent before so).
    zero_pages: u64,
    /// Different pfns named by the entries; null when there were too many
    /// sparse ones to count (see [`MAX_PFN_CHUNKS`]).
    distinct_pfns: Option<u64>,
    /// Entries naming a pfn an earlier entry named (pages sent again in a
    /// later pre-copy round or checkpoint); null with `distinct_pfns`.
    resent_pages: Option<u64>,
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

/// One HVM parameter of the HVM_PARAMS record.
#[derive(Debug, Serialize)]
pub struct HvmParamInfo {
    index: u64,
    /// `HVM_PARAM_*` without the prefix, from xen/hvm/params.h; null for an
    /// index Xen 4.17 does not define.
    name: Option<&'static str>,
    value: u64,
}

/// Pfns per chunk of the distinct-pfn set (one bit each).
const PFN_CHUNK: u64 = 512;

/// Most chunks the distinct-pfn set keeps (about 80 bytes each: 640 MiB of
/// guest pfns dense, far more than any guest); past that the counts are
/// given up, so a stream of scattered pfns cannot exhaust memory.
pub const MAX_PFN_CHUNKS: usize = 1 << 20;

/// The pfns seen so far, as a sparse bitmap.
#[derive(Debug, Default)]
struct PfnSet {
    chunks: HashMap<u64, [u64; (PFN_CHUNK / 64) as usize]>,
    distinct: u64,
    overflow: bool,
}

impl PfnSet {
    /// Adds `pfn`; returns whether it was there already (false once
    /// overflowed).
    fn insert(&mut self, pfn: u64) -> bool {
        if self.overflow {
            return false;
        }
        let key = pfn / PFN_CHUNK;
        if !self.chunks.contains_key(&key) && self.chunks.len() >= MAX_PFN_CHUNKS {
            self.overflow = true;
            self.chunks = HashMap::new();
            return false;
        }
        let chunk = self.chunks.entry(key).or_default();
        let bit = pfn % PFN_CHUNK;
        let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
        let seen = chunk[word] & mask != 0;
        if !seen {
            chunk[word] |= mask;
            self.distinct += 1;
        }
        seen
    }
}

/// Everything `inspect` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Always "xcmig".
    tool: &'static str,
    /// The xcmig version.
    tool_version: &'static str,
    /// [`SCHEMA_VERSION`].
    schema_version: u32,
    format: Format,
    valid: bool,
    error: Option<String>,
    /// Octets of the whole stream; null when it is invalid.
    bytes: Option<u64>,
    ending: Option<Ending>,
    /// The layers whose headers were read, outermost first.
    layers: Vec<LayerInfo>,
    xl: Option<XlInfo>,
    libxl: Option<LibxlInfo>,
    libxc: Option<LibxcInfo>,
    record_types: Vec<TypeStats>,
    pages: PageStats,
    /// vCPUs the records show: CPU entries of HVM_CONTEXT (HVM, PVH) or
    /// the distinct vcpu ids of the X86_PV_VCPU_* records (PV); null when
    /// none of them was seen.
    vcpus: Option<u64>,
    /// The last HVM_PARAMS record's parameters; null without one.
    hvm_params: Option<Vec<HvmParamInfo>>,
    checkpoints_libxc: u64,
    checkpoints_libxl: u64,
    warnings: Vec<String>,
    notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<Vec<RecordLine>>,
    #[serde(skip)]
    pfns: PfnSet,
    #[serde(skip)]
    hvm_vcpus: Option<u64>,
    #[serde(skip)]
    pv_vcpus: BTreeSet<u32>,
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
            tool: "xcmig",
            tool_version: env!("CARGO_PKG_VERSION"),
            schema_version: SCHEMA_VERSION,
            format,
            valid: false,
            error: None,
            bytes: None,
            ending: None,
            layers: Vec::new(),
            xl: None,
            libxl: None,
            libxc: None,
            record_types: Vec::new(),
            pages: PageStats::default(),
            vcpus: None,
            hvm_params: None,
            checkpoints_libxc: 0,
            checkpoints_libxl: 0,
            warnings: Vec::new(),
            notes: Vec::new(),
            records: (verbose && json).then(Vec::new),
            pfns: PfnSet::default(),
            hvm_vcpus: None,
            pv_vcpus: BTreeSet::new(),
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
        self.layers = self.layer_list();
        self.record_types = std::mem::take(&mut self.by_type).into_values().collect();
        if !self.pfns.overflow {
            self.pages.distinct_pfns = Some(self.pfns.distinct);
            self.pages.resent_pages = Some(self.pages.entries - self.pfns.distinct);
        }
        self.pfns = PfnSet::default();
        self.vcpus = self
            .hvm_vcpus
            .or_else(|| (!self.pv_vcpus.is_empty()).then_some(self.pv_vcpus.len() as u64));
        for t in PageType::ALL {
            let n = self.page_counts[usize::from(t.bits())];
            if n > 0 {
                self.pages.by_type.insert(t.name(), n);
            }
        }
    }

    /// The layers whose headers were read, outermost first.
    fn layer_list(&self) -> Vec<LayerInfo> {
        let mut v = Vec::new();
        if let Some(x) = &self.xl {
            v.push(LayerInfo {
                layer: "xl",
                offset: 0,
                version: None,
                config_bytes: x.config_bytes,
                config_json: Some(x.json_config),
            });
        }
        if let Some(l) = &self.libxl {
            v.push(LayerInfo {
                layer: "libxl",
                offset: l.offset,
                version: Some(l.version),
                config_bytes: None,
                config_json: None,
            });
        }
        if let Some(c) = &self.libxc {
            v.push(LayerInfo {
                layer: "libxc",
                offset: c.offset,
                version: Some(c.version),
                config_bytes: None,
                config_json: None,
            });
        }
        v
    }

    /// `xl header (config 1234 octets, JSON) > libxl v2 > libxc v3`.
    fn layers_text(&self) -> String {
        let parts: Vec<String> = self
            .layer_list()
            .iter()
            .map(|l| match l.layer {
                "xl" => format!(
                    "xl header ({}{})",
                    l.config_bytes
                        .map_or("no config".to_string(), |n| format!("config {n} octets")),
                    if l.config_json == Some(true) {
                        ", JSON"
                    } else {
                        ""
                    }
                ),
                name => format!("{name} v{}", l.version.unwrap_or(0)),
            })
            .collect();
        parts.join(" > ")
    }

    /// The text form.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "format: {}", self.format);
        if self.xl.is_some() || self.libxl.is_some() || self.libxc.is_some() {
            let _ = writeln!(o, "layers: {}", self.layers_text());
        }
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
            "pages: {}, {} with data ({}), {}",
            plural(p.entries, "entry", "entries"),
            p.data_pages,
            human_bytes(p.data_pages * xcmig_stream::PAGE_SIZE as u64),
            plural(p.zero_pages, "zero page", "zero pages"),
        );
        if let (Some(lo), Some(hi)) = (p.pfn_min, p.pfn_max) {
            let _ = write!(o, ", pfn range {lo:#x}-{hi:#x}");
        }
        let _ = writeln!(o);
        match (p.distinct_pfns, p.resent_pages) {
            (Some(d), Some(r)) => {
                let _ = writeln!(
                    o,
                    "  {}, {} (pfns sent more than once)",
                    plural(d, "distinct pfn", "distinct pfns"),
                    plural(r, "re-sent page", "re-sent pages")
                );
            }
            _ => {
                let _ = writeln!(
                    o,
                    "  distinct pfns: not counted (more than {} scattered pfn ranges)",
                    MAX_PFN_CHUNKS
                );
            }
        }
        for (name, n) in &p.by_type {
            let label = if *name == PageType::XAlloc.name() {
                format!("{name} (zero pages, no data)")
            } else {
                name.to_string()
            };
            let _ = writeln!(o, "  {label:<28} {n:>12}");
        }
        if let Some(n) = self.vcpus {
            let _ = writeln!(o, "vcpus: {n}");
        }
        if let Some(params) = &self.hvm_params {
            let _ = writeln!(o, "hvm params: {}", params.len());
            for hp in params {
                let name = hp
                    .name
                    .map_or_else(|| format!("#{}", hp.index), str::to_string);
                let _ = writeln!(o, "  {name:<28} {:#x}", hp.value);
            }
        }
        let _ = writeln!(
            o,
            "checkpoints: {} (libxc CHECKPOINT), {} (libxl CHECKPOINT_END)",
            self.checkpoints_libxc, self.checkpoints_libxl
        );
        match (&self.ending, &self.error, self.bytes) {
            (Some(Ending::End), _, Some(n)) => {
                let _ = writeln!(o, "end: END record, {}", human_bytes(n));
            }
            (Some(Ending::EofAfterCheckpoint), _, Some(n)) => {
                let _ = writeln!(
                    o,
                    "end: EOF after a complete checkpoint, {}",
                    human_bytes(n)
                );
            }
            (_, Some(e), _) => {
                let _ = writeln!(o, "invalid: {e}");
            }
            _ => {}
        }
        let _ = writeln!(o, "warnings: {}", self.warnings.len());
        if !self.notes.is_empty() {
            let _ = writeln!(o, "notes: {}", self.notes.len());
        }
        o
    }
}

/// `n` and the noun, in the singular for 1.
fn plural(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// A size in binary units with the exact count: `1.00 GiB (1073741824
/// bytes)`; below 1 KiB just `N bytes`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return plural(n, "byte", "bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {} ({n} bytes)", UNITS[u])
}

/// The name of HVM parameter `index` (xen/hvm/params.h of Xen 4.17,
/// without the `HVM_PARAM_` prefix); None for an index it does not define.
pub fn hvm_param_name(index: u64) -> Option<&'static str> {
    Some(match index {
        0 => "CALLBACK_IRQ",
        1 => "STORE_PFN",
        2 => "STORE_EVTCHN",
        4 => "PAE_ENABLED",
        5 => "IOREQ_PFN",
        6 => "BUFIOREQ_PFN",
        9 => "VIRIDIAN",
        10 => "TIMER_MODE",
        11 => "HPET_ENABLED",
        12 => "IDENT_PT",
        13 => "DM_DOMAIN",
        14 => "ACPI_S_STATE",
        15 => "VM86_TSS",
        16 => "VPT_ALIGN",
        17 => "CONSOLE_PFN",
        18 => "CONSOLE_EVTCHN",
        19 => "ACPI_IOPORTS_LOCATION",
        20 => "MEMORY_EVENT_CR0",
        21 => "MEMORY_EVENT_CR3",
        22 => "MEMORY_EVENT_CR4",
        23 => "MEMORY_EVENT_INT3",
        24 => "NESTEDHVM",
        25 => "MEMORY_EVENT_SINGLE_STEP",
        26 => "BUFIOREQ_EVTCHN",
        27 => "PAGING_RING_PFN",
        28 => "MONITOR_RING_PFN",
        29 => "SHARING_RING_PFN",
        30 => "MEMORY_EVENT_MSR",
        31 => "TRIPLE_FAULT_REASON",
        32 => "IOREQ_SERVER_PFN",
        33 => "NR_IOREQ_SERVER_PAGES",
        34 => "VM_GENERATION_ID_ADDR",
        35 => "ALTP2M",
        36 => "X87_FIP_WIDTH",
        37 => "VM86_TSS_SIZED",
        38 => "MCA_CAP",
        _ => return None,
    })
}

/// CPU entries (typecode 2, `HVM_SAVE_CODE(CPU)`) of an HVM context blob:
/// one per vCPU. None when the blob does not parse as save records.
fn hvm_context_cpus(blob: &[u8]) -> Option<u64> {
    const CPU: u16 = 2;
    const END: u16 = 0;
    let mut at = 0usize;
    let mut cpus = 0u64;
    while at + 8 <= blob.len() {
        let code = u16::from_le_bytes([blob[at], blob[at + 1]]);
        let len = u32::from_le_bytes(blob[at + 4..at + 8].try_into().ok()?) as usize;
        if code == END {
            return Some(cpus);
        }
        if code == CPU {
            cpus += 1;
        }
        at = at.checked_add(8)?.checked_add(len)?;
    }
    (at == blob.len()).then_some(cpus)
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
            if e.page_type == PageType::XAlloc {
                p.zero_pages += 1;
            }
            self.pfns.insert(e.pfn);
            lo = lo.min(e.pfn);
            hi = hi.max(e.pfn);
        }
        if !entries.is_empty() {
            p.pfn_min = Some(lo);
            p.pfn_max = Some(hi);
        }
    }

    fn libxc_record(&mut self, rec: &Record<'_>) {
        match rec {
            Record::HvmParams(a) => {
                self.hvm_params = Some(
                    a.iter()
                        .map(|p| HvmParamInfo {
                            index: p.index,
                            name: hvm_param_name(p.index),
                            value: p.value,
                        })
                        .collect(),
                );
            }
            Record::HvmContext(b) => {
                if let Some(n) = hvm_context_cpus(b) {
                    self.hvm_vcpus = Some(n);
                }
            }
            Record::X86PvVcpu(c) => {
                self.pv_vcpus.insert(c.vcpu_id);
            }
            _ => {}
        }
    }

    fn warning(&mut self, w: &str) {
        if self.echo_warnings {
            eprintln!("warning: {w}");
        }
        self.warnings.push(w.to_string());
    }

    fn note(&mut self, n: &str) {
        if self.echo_warnings {
            eprintln!("note: {n}");
        }
        self.notes.push(n.to_string());
    }

    fn checkpoints(&mut self, libxc: u64, libxl: u64) {
        self.checkpoints_libxc = libxc;
        self.checkpoints_libxl = libxl;
    }
}
