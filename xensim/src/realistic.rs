//! Guest memory that looks like a running guest's (`--fill realistic`,
//! `domain run --pattern realistic`): zero pages, page-cache text (source
//! code, logs), page-cache binaries (x86-64 machine code, ELF symbol tables),
//! anonymous heap (pointers, small integers, repeated records) and
//! incompressible data (compressed files, keys), in runs of one kind.
//!
//! Everything is a pure function of (seed, gfn): the kind of a page from
//! [`page_kind`], its content from [`fill_page`]. xensim/README.md §12 gives
//! the proportions, where they come from, and the measured compression
//! ratios.

use crate::layout::{mix, Rng};

/// What a page of a realistic guest holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageKind {
    /// Never written, or cleared: all zero.
    Zero,
    /// Page-cache text: C-like source and log lines (printable ASCII).
    Text,
    /// Page-cache binaries: x86-64 machine code, ELF symbol tables, rodata.
    Code,
    /// Anonymous memory: records of pointers, small integers and flags.
    Heap,
    /// High-entropy data: compressed files, media, keys.
    Random,
}

impl PageKind {
    /// Every kind, in the order of [`PROPORTIONS`].
    pub const ALL: [PageKind; 5] = [
        PageKind::Zero,
        PageKind::Text,
        PageKind::Code,
        PageKind::Heap,
        PageKind::Random,
    ];

    /// Lower-case name (as in the README's table).
    pub fn as_str(self) -> &'static str {
        match self {
            PageKind::Zero => "zero",
            PageKind::Text => "text",
            PageKind::Code => "code",
            PageKind::Heap => "heap",
            PageKind::Random => "random",
        }
    }
}

/// Share of RAM pages of each kind, in per mille, in the order of
/// [`PageKind::ALL`] (derivation: xensim/README.md §12).
pub const PROPORTIONS: [u32; 5] = [300, 150, 130, 300, 120];

/// Runs never cross a boundary of this many pages (16 MiB), so that the
/// kind of a page is found by walking at most one region's runs.
const REGION_PAGES: u64 = 4096;

/// Salt for [`mix`], distinct from the crate's others (1..4, 10..11,
/// 20..22, 30..31, 40..41, 50, 60..61, 70).
const SALT_RUNS: u64 = 80;

/// A run's length in pages: log-uniform over 2..512 (an octave `2^e..2^(e+1)`
/// for `e` in 1..=8, uniform within it), so short runs are common and most
/// pages lie in runs of a hundred or more, as allocations cluster.
fn run_len(r: u64) -> u64 {
    let e = 1 + (r & 7);
    (1 << e) + ((r >> 3) % (1 << e))
}

fn kind_of(r: u64) -> PageKind {
    let mut x = (r % 1000) as u32;
    for (k, p) in PageKind::ALL.iter().zip(PROPORTIONS) {
        if x < p {
            return *k;
        }
        x -= p;
    }
    PageKind::Random
}

/// The kind of `gfn` in a realistic guest built with `seed`.
pub fn page_kind(seed: u64, gfn: u64) -> PageKind {
    let region = gfn / REGION_PAGES;
    let off = gfn % REGION_PAGES;
    let mut rng = Rng::new(mix(seed, region, SALT_RUNS));
    let mut pos = 0;
    loop {
        let kind = kind_of(rng.next_u64());
        pos += run_len(rng.next_u64());
        if off < pos {
            return kind;
        }
    }
}

/// Fill `buf` (one page, every byte written) with fresh content of `kind`,
/// chosen by `seed`. A [`PageKind::Zero`] page is cleared.
pub fn fill_page(kind: PageKind, seed: u64, buf: &mut [u8]) {
    let mut rng = Rng::new(seed);
    match kind {
        PageKind::Zero => buf.fill(0),
        PageKind::Text => text_page(&mut rng, buf),
        PageKind::Code => code_page(&mut rng, buf),
        PageKind::Heap => heap_page(&mut rng, buf),
        PageKind::Random => rng.fill(buf),
    }
}

/// A byte cursor that silently stops at the end of the page.
struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Out<'_> {
    fn full(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn put(&mut self, b: &[u8]) {
        let n = b.len().min(self.buf.len() - self.pos);
        self.buf[self.pos..self.pos + n].copy_from_slice(&b[..n]);
        self.pos += n;
    }

    fn byte(&mut self, b: u8) {
        self.put(&[b]);
    }
}

/// A skewed pick from `n` items: low indices far more often, as word
/// frequencies in text and code follow Zipf's law.
fn zipf(rng: &mut Rng, n: usize) -> usize {
    let r = rng.next_u64();
    let a = (r & 0xffff) as usize % n;
    let b = ((r >> 16) & 0xffff) as usize % n;
    a * b / n
}

const WORDS: &[&str] = &[
    "i", "ret", "len", "buf", "p", "n", "size", "count", "page", "data", "ctx", "err", "rc",
    "flags", "entry", "next", "addr", "offset", "state", "info", "dom", "pfn", "gfn", "mfn",
    "frame", "vcpu", "map", "table", "list", "head", "prev", "lock", "mask", "bits", "index",
    "value", "type", "name", "max", "min", "start", "end", "batch", "record", "stream", "header",
    "req", "resp", "dev", "queue", "node", "key", "hash", "cache", "file", "inode", "sector",
    "block", "sk", "skb", "msg", "timer", "irq", "cpu", "task", "mm", "vma", "pte", "pmd", "regs",
    "out", "tmp", "j", "k", "x", "y", "src", "dst", "base", "limit", "nr", "id", "ops", "priv",
];

const FUNCS: &[&str] = &[
    "memcpy",
    "memset",
    "kfree",
    "kmalloc",
    "printk",
    "spin_lock",
    "spin_unlock",
    "list_add",
    "list_del",
    "copy_to_user",
    "get_page",
    "put_page",
    "xc_domain_getinfo",
    "read_record",
    "write_batch",
    "send_page",
    "map_foreign",
    "unmap",
    "pr_err",
    "pr_debug",
    "mutex_lock",
    "mutex_unlock",
    "atomic_inc",
    "atomic_dec_and_test",
    "wake_up",
    "schedule",
    "strlen",
    "snprintf",
    "hash_long",
    "rb_insert",
    "rb_erase",
    "init_waitqueue_head",
    "dma_map_page",
];

const TYPES: &[&str] = &[
    "int",
    "unsigned int",
    "unsigned long",
    "uint64_t",
    "uint32_t",
    "size_t",
    "struct page *",
    "void *",
    "char *",
    "bool",
    "xen_pfn_t",
    "struct list_head",
    "u8",
    "u16",
    "u32",
    "u64",
    "struct xc_sr_record",
    "const char *",
    "long",
    "struct sk_buff *",
    "struct inode *",
];

const PROSE: &[&str] = &[
    "the", "of", "a", "to", "is", "in", "and", "that", "for", "it", "this", "be", "not", "we",
    "page", "when", "if", "with", "are", "on", "by", "must", "so", "from", "can", "at", "after",
    "before", "memory", "guest", "domain", "write", "read", "call", "returns", "error", "which",
    "all", "only", "one", "each", "no", "may", "has", "been", "set", "clear", "bit", "free",
];

const LOG_SOURCES: &[&str] = &[
    "kernel:",
    "systemd[1]:",
    "sshd[2231]:",
    "cron[812]:",
    "nginx[1440]:",
    "postgres[1893]:",
    "dhclient[655]:",
    "xen-blkfront:",
    "containerd[977]:",
    "kernel: EXT4-fs (xvda1):",
];

fn word<'a>(rng: &mut Rng, list: &[&'a str]) -> &'a str {
    list[zipf(rng, list.len())]
}

fn number(rng: &mut Rng, o: &mut Out) {
    let r = rng.next_u64();
    let s = match r % 8 {
        0 => format!("{:#x}", (r >> 8) & 0xffff),
        1 => format!("{}", (r >> 8) % 4096),
        _ => format!("{}", (r >> 8) % 16),
    };
    o.put(s.as_bytes());
}

fn prose(rng: &mut Rng, o: &mut Out, words: usize) {
    for w in 0..words {
        if w > 0 {
            o.byte(b' ');
        }
        o.put(word(rng, PROSE).as_bytes());
    }
}

/// C-like source lines, at a nesting depth that wanders as blocks open and
/// close; or syslog-like lines. Only printable ASCII, tabs and newlines.
fn text_page(rng: &mut Rng, buf: &mut [u8]) {
    let mut o = Out { buf, pos: 0 };
    let log = rng.next_u64() % 4 == 0;
    let tabs = rng.next_u64() % 2 == 0;
    let mut depth = 1usize;
    let mut t = rng.next_u64() % 100_000;
    while !o.full() {
        if log {
            t += rng.next_u64() % 5000;
            let head = format!(
                "Dec  3 {:02}:{:02}:{:02} guest {} ",
                (t / 3_600_000) % 24,
                (t / 60_000) % 60,
                (t / 1000) % 60,
                word(rng, LOG_SOURCES)
            );
            o.put(head.as_bytes());
            {
                let n = 3 + (rng.next_u64() % 9) as usize;
                prose(rng, &mut o, n);
            }
            o.byte(b' ');
            number(rng, &mut o);
            o.byte(b'\n');
            continue;
        }
        let r = rng.next_u64();
        let indent = |o: &mut Out, d: usize| {
            for _ in 0..d {
                o.put(if tabs { &b"\t"[..] } else { &b"    "[..] });
            }
        };
        match r % 16 {
            0 if depth > 1 => {
                depth -= 1;
                indent(&mut o, depth);
                o.put(b"}\n");
            }
            1 | 2 if depth < 5 => {
                indent(&mut o, depth);
                o.put(if r & 0x100 != 0 {
                    &b"if ("[..]
                } else {
                    &b"while ("[..]
                });
                o.put(word(rng, WORDS).as_bytes());
                o.put(if r & 0x200 != 0 {
                    &b" < "[..]
                } else {
                    &b" == "[..]
                });
                number(rng, &mut o);
                o.put(b") {\n");
                depth += 1;
            }
            3 => {
                indent(&mut o, depth);
                o.put(b"/* ");
                {
                    let n = 4 + (rng.next_u64() % 8) as usize;
                    prose(rng, &mut o, n);
                }
                o.put(b" */\n");
            }
            4 => o.byte(b'\n'),
            5 if depth == 1 => {
                o.put(b"}\n\nstatic ");
                o.put(word(rng, TYPES).as_bytes());
                o.byte(b' ');
                o.put(word(rng, FUNCS).as_bytes());
                o.byte(b'_');
                o.put(word(rng, WORDS).as_bytes());
                o.put(b"(");
                o.put(word(rng, TYPES).as_bytes());
                o.byte(b' ');
                o.put(word(rng, WORDS).as_bytes());
                o.put(b")\n{\n");
            }
            6 | 7 => {
                indent(&mut o, depth);
                o.put(word(rng, TYPES).as_bytes());
                o.byte(b' ');
                o.put(word(rng, WORDS).as_bytes());
                o.put(b";\n");
            }
            8 => {
                indent(&mut o, depth);
                o.put(b"return ");
                o.put(word(rng, WORDS).as_bytes());
                o.put(b";\n");
            }
            _ => {
                indent(&mut o, depth);
                o.put(word(rng, WORDS).as_bytes());
                if r & 0x400 != 0 {
                    o.put(b"->");
                    o.put(word(rng, WORDS).as_bytes());
                }
                o.put(b" = ");
                o.put(word(rng, FUNCS).as_bytes());
                o.byte(b'(');
                for a in 0..(r >> 12) % 4 {
                    if a > 0 {
                        o.put(b", ");
                    }
                    if (r >> (20 + a)) & 1 == 0 {
                        o.put(word(rng, WORDS).as_bytes());
                    } else {
                        number(rng, &mut o);
                    }
                }
                o.put(b");\n");
            }
        }
    }
}

/// x86-64 instruction templates: fixed opcode bytes, then this many operand
/// bytes (displacements, immediates, rel32 targets).
const INSNS: &[(&[u8], u8)] = &[
    (&[0x48, 0x8b, 0x45], 1), // mov rax, [rbp+disp8]
    (&[0x48, 0x89, 0x45], 1), // mov [rbp+disp8], rax
    (&[0x48, 0x8b, 0x7d], 1), // mov rdi, [rbp+disp8]
    (&[0x8b, 0x45], 1),       // mov eax, [rbp+disp8]
    (&[0x48, 0x89, 0xc7], 0), // mov rdi, rax
    (&[0x48, 0x89, 0xe5], 0), // mov rbp, rsp
    (&[0x89, 0xc2], 0),       // mov edx, eax
    (&[0x31, 0xc0], 0),       // xor eax, eax
    (&[0x85, 0xc0], 0),       // test eax, eax
    (&[0x48, 0x85, 0xc0], 0), // test rax, rax
    (&[0x74], 1),             // je rel8
    (&[0x75], 1),             // jne rel8
    (&[0xeb], 1),             // jmp rel8
    (&[0xe8], 4),             // call rel32
    (&[0x0f, 0x84], 4),       // je rel32
    (&[0x48, 0x8d, 0x05], 4), // lea rax, [rip+rel32]
    (&[0x48, 0x8d, 0x3d], 4), // lea rdi, [rip+rel32]
    (&[0x48, 0x83, 0xc0], 1), // add rax, imm8
    (&[0x48, 0x83, 0xec], 1), // sub rsp, imm8
    (&[0x83, 0xf8], 1),       // cmp eax, imm8
    (&[0xb8], 4),             // mov eax, imm32
    (&[0xbf], 4),             // mov edi, imm32
    (&[0x41, 0x54], 0),       // push r12
    (&[0x53], 0),             // push rbx
    (&[0x5b], 0),             // pop rbx
    (&[0x41, 0x5c], 0),       // pop r12
];

/// Functions of machine code (prologue, a body drawn from common
/// instructions with small displacements and nearby call targets, epilogue,
/// int3/nop padding to 16 bytes); or an ELF symbol table; or rodata strings.
fn code_page(rng: &mut Rng, buf: &mut [u8]) {
    let mut o = Out { buf, pos: 0 };
    match rng.next_u64() % 8 {
        0 => {
            // Elf64_Sym records: name offset, info, other, shndx, value, size.
            let mut name = (rng.next_u64() % 0x10000) as u32;
            let mut value = 0x40_1000 + (rng.next_u64() % 0x10_0000);
            while !o.full() {
                let r = rng.next_u64();
                name += 8 + (r % 24) as u32;
                let size = 16 + (r >> 8) % 400;
                value += size + ((r >> 20) % 16);
                o.put(&name.to_le_bytes());
                o.put(&[if r & 0x10_0000 != 0 { 0x12 } else { 0x11 }, 0]);
                o.put(&(14 + ((r >> 21) % 3) as u16).to_le_bytes());
                o.put(&value.to_le_bytes());
                o.put(&size.to_le_bytes());
            }
        }
        1 => {
            // .rodata: NUL-terminated identifiers and format strings.
            while !o.full() {
                if rng.next_u64() % 3 == 0 {
                    o.put(b"%s: ");
                    {
                        let n = 2 + (rng.next_u64() % 5) as usize;
                        prose(rng, &mut o, n);
                    }
                    o.put(b" %d\n");
                } else {
                    o.put(word(rng, FUNCS).as_bytes());
                    o.byte(b'_');
                    o.put(word(rng, WORDS).as_bytes());
                }
                o.byte(0);
            }
        }
        _ => {
            while !o.full() {
                o.put(&[0x55, 0x48, 0x89, 0xe5]); // push rbp; mov rbp, rsp
                let body = 4 + rng.next_u64() % 40;
                for _ in 0..body {
                    let (op, n) = INSNS[zipf(rng, INSNS.len())];
                    o.put(op);
                    let r = rng.next_u64();
                    match n {
                        // Stack slots are small multiples of 8 below rbp.
                        1 => o.byte((0u8).wrapping_sub(8 * (1 + (r % 12) as u8))),
                        // Targets and constants within +-1 MiB.
                        4 => {
                            let v = ((r % (1 << 21)) as i64 - (1 << 20)) as i32;
                            o.put(&v.to_le_bytes());
                        }
                        _ => {}
                    }
                }
                o.put(&[0xc9, 0xc3]); // leave; ret
                let pad = (16 - o.pos % 16) % 16;
                for _ in 0..pad {
                    o.byte(if rng.next_u64() % 2 == 0 { 0xcc } else { 0x90 });
                }
            }
        }
    }
}

/// What an 8-byte field of a heap record holds.
#[derive(Clone, Copy)]
enum Field {
    KernelPtr,
    UserPtr,
    ListLink,
    Small,
    Flags,
    Counter,
    Zero,
    Hash,
}

/// An array of fixed-size records (one struct layout per page, as a slab
/// cache or an array of structs holds): pointers into the kernel's direct
/// map or a user heap near a common base, list links to neighbouring
/// records, small integers, flags, ids, some zero fields and freed records,
/// and now and then a hash or key.
fn heap_page(rng: &mut Rng, buf: &mut [u8]) {
    const SIZES: [usize; 8] = [16, 24, 32, 48, 64, 96, 128, 256];
    let rec = SIZES[(rng.next_u64() % 8) as usize];
    let mut fields: Vec<Field> = (0..rec / 8)
        .map(|_| match rng.next_u64() % 16 {
            0..=2 => Field::KernelPtr,
            3 => Field::UserPtr,
            4 | 5 => Field::ListLink,
            6..=8 => Field::Small,
            9 => Field::Flags,
            10 => Field::Counter,
            11..=13 => Field::Zero,
            _ => Field::Hash,
        })
        .collect();
    // A record of zero fields only would make a zero page: its first field
    // is then a pointer, as a slab object's first word often is.
    if fields.iter().all(|f| matches!(f, Field::Zero)) {
        fields[0] = Field::KernelPtr;
    }
    // At most one key or hash per record, and none in the smallest ones:
    // records are mostly pointers and small values.
    let mut hashes = 0;
    for f in fields.iter_mut() {
        if matches!(f, Field::Hash) {
            hashes += 1;
            if hashes > 1 || rec < 32 {
                *f = Field::Small;
            }
        }
    }
    let kbase = 0xffff_8880_0000_0000u64 + ((rng.next_u64() % (1 << 22)) << 12);
    let ubase = 0x0000_55d0_0000_0000u64 + ((rng.next_u64() % (1 << 24)) << 12);
    let here = kbase + ((rng.next_u64() % 512) << 12);
    let flag_set = [0u64, 1, 0x10, 0x11, 0x8000_0000, 0x8000_0001];
    let mut id = rng.next_u64() % 100_000;
    for (i, r) in buf.chunks_exact_mut(rec).enumerate() {
        // Freed slab objects are zero (init_on_free) or poisoned.
        if rng.next_u64() % 10 == 0 {
            r.fill(0);
            continue;
        }
        id += 1 + rng.next_u64() % 3;
        for (f, c) in fields.iter().zip(r.chunks_exact_mut(8)) {
            let x = rng.next_u64();
            let v = match f {
                Field::KernelPtr => kbase + ((x % (1 << 20)) & !7),
                Field::UserPtr => ubase + ((x % (1 << 16)) & !15),
                Field::ListLink => {
                    let j = if x & 1 == 0 {
                        i + 1
                    } else {
                        i.saturating_sub(1)
                    };
                    here + (j * rec) as u64
                }
                Field::Small => x % 64,
                Field::Flags => flag_set[(x % 6) as usize],
                Field::Counter => id,
                Field::Zero => 0,
                Field::Hash => x,
            };
            c.copy_from_slice(&v.to_le_bytes());
        }
    }
    // A record size that does not divide the page leaves a tail: zero it,
    // as the slab's unused end is.
    let tail = buf.len() - buf.len() % rec;
    buf[tail..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realistic_tests::{entropy, structured_words};

    const PAGE: usize = 4096;

    fn page(kind: PageKind, seed: u64) -> Vec<u8> {
        // Start from garbage: every byte must be written.
        let mut b = vec![0xa5u8; PAGE];
        fill_page(kind, seed, &mut b);
        b
    }

    #[test]
    fn kinds_are_deterministic_by_seed_and_gfn() {
        let a: Vec<PageKind> = (0..20_000).map(|g| page_kind(7, g)).collect();
        let b: Vec<PageKind> = (0..20_000).map(|g| page_kind(7, g)).collect();
        let c: Vec<PageKind> = (0..20_000).map(|g| page_kind(8, g)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        for k in PageKind::ALL {
            assert_eq!(page(k, 3), page(k, 3), "{k:?}");
            if k != PageKind::Zero {
                assert_ne!(page(k, 3), page(k, 4), "{k:?}");
            }
        }
    }

    #[test]
    fn proportions_over_a_large_guest_are_within_tolerance() {
        // 4 GiB of gfns: kinds only, no contents, so this is quick.
        let pages = 1u64 << 20;
        let mut n = [0u64; 5];
        for g in 0..pages {
            let k = page_kind(11, g);
            n[PageKind::ALL.iter().position(|&x| x == k).unwrap()] += 1;
        }
        for (i, k) in PageKind::ALL.iter().enumerate() {
            let got = n[i] as f64 / pages as f64;
            let want = f64::from(PROPORTIONS[i]) / 1000.0;
            assert!((got - want).abs() < 0.02, "{k:?}: {got:.3} vs {want:.3}");
        }
    }

    #[test]
    fn pages_come_in_runs_not_page_by_page_alternation() {
        let pages = 1u64 << 18;
        let mut changes = 0u64;
        let mut run = 1u64;
        let mut longest = 0u64;
        let mut runs = Vec::new();
        for g in 1..pages {
            if page_kind(5, g) != page_kind(5, g - 1) {
                changes += 1;
                runs.push(run);
                run = 1;
            } else {
                run += 1;
                longest = longest.max(run);
            }
        }
        let mean = pages as f64 / (changes + 1) as f64;
        // Runs of the log-uniform 2..512 lengths, merged when neighbours
        // share a kind: a mean near a hundred pages.
        assert!(mean > 50.0 && mean < 250.0, "mean run {mean:.1}");
        assert!(longest >= 400, "longest run {longest}");
        let short = runs.iter().filter(|&&r| r < 8).count();
        assert!(short > 0, "no short runs");
    }

    #[test]
    fn text_pages_are_printable_ascii_lines() {
        for s in 0..200 {
            let b = page(PageKind::Text, s);
            assert!(
                b.iter()
                    .all(|&c| c == b'\n' || c == b'\t' || (0x20..0x7f).contains(&c)),
                "seed {s}"
            );
            let lines = b.iter().filter(|&&c| c == b'\n').count();
            assert!(lines > 40, "seed {s}: {lines} lines");
            let e = entropy(&b);
            // Deeply indented source is repetitive: English text is about
            // 4.5 bits a byte, C with tabs lower.
            assert!(e > 3.0 && e < 5.5, "seed {s}: entropy {e:.2}");
        }
    }

    #[test]
    fn random_pages_have_high_byte_entropy() {
        for s in 0..50 {
            let e = entropy(&page(PageKind::Random, s));
            assert!(e > 7.9, "seed {s}: entropy {e:.3}");
        }
    }

    #[test]
    fn heap_pages_hold_pointers_and_small_integers() {
        for s in 0..200 {
            let b = page(PageKind::Heap, s);
            let words = b.len() / 8;
            let structured = structured_words(&b);
            assert!(
                structured * 4 >= words * 3,
                "seed {s}: {structured} of {words}"
            );
            let e = entropy(&b);
            assert!(e < 6.5, "seed {s}: entropy {e:.2}");
        }
    }

    #[test]
    fn code_pages_are_binary_but_not_random() {
        for s in 0..200 {
            let b = page(PageKind::Code, s);
            let binary = b
                .iter()
                .filter(|&&c| c != b'\n' && !(0x20..0x7f).contains(&c))
                .count();
            assert!(binary > 0, "seed {s}: all printable");
            let e = entropy(&b);
            assert!(e > 2.0 && e < 7.5, "seed {s}: entropy {e:.2}");
        }
        // Most code pages are machine code: function returns and calls.
        let code = (0..200)
            .filter(|&s| {
                let b = page(PageKind::Code, s);
                b.windows(2).any(|w| w == [0xc9, 0xc3]) && b.contains(&0xe8)
            })
            .count();
        assert!(code > 120, "{code} of 200 pages hold machine code");
    }

    #[test]
    fn zero_pages_are_cleared() {
        assert!(page(PageKind::Zero, 1).iter().all(|&c| c == 0));
    }
}
