//! `xcmig convert-legacy`: a legacy image (Xen 4.5 and earlier, from a 32-
//! or 64-bit toolstack) to a v3 (or v2) libxc or libxl stream, streaming.
//!
//! The work is `xcmig_stream::legacy`; this module opens the files, finds
//! the toolstack width with `--width auto`, stages the output (a failed
//! conversion leaves no file) and reports.

use std::fs::File;
use std::io::{self, BufWriter, Cursor, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use xcmig_stream::legacy::{
    convert, detect_width, xend_header_len, ConvertOptions, Guest, LegacyError, OutputFormat,
    Trailer, Width,
};
use xcmig_stream::xl::XlHeader;
use xcmig_stream::Version;

use crate::staged::{is_stdio, Staged};

/// Octets of the image examined by `--width auto`.
const DETECT_PREFIX: usize = 1 << 20;

/// `--width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WidthArg {
    /// A 32-bit toolstack wrote the image.
    #[value(name = "32")]
    W32,
    /// A 64-bit toolstack wrote the image.
    #[value(name = "64")]
    W64,
    /// Decide from the image's first octets; refuse when they do not.
    Auto,
}

/// `--guest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GuestArg {
    /// An x86 PV guest.
    Pv,
    /// An x86 HVM guest.
    Hvm,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// A bare libxc stream (for `xc_domain_restore`).
    Libxc,
    /// A libxl stream (for libxl, or an `xl` file with `--xl`).
    Libxl,
}

/// The options of `xcmig convert-legacy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Word size of the toolstack that saved the image.
    #[arg(long, short = 'w', value_enum, default_value = "auto")]
    pub width: WidthArg,
    /// The guest kind (the image does not say).
    #[arg(long, short = 'g', value_enum)]
    pub guest: GuestArg,
    /// The stream to write.
    #[arg(long, short = 'f', value_enum, default_value = "libxc")]
    pub format: FormatArg,
    /// The input is an `xl save` file: its header is kept, marked as
    /// followed by a v2 stream (needs --format libxl).
    #[arg(long, short = 'x')]
    pub xl: bool,
    /// libxc stream version to write.
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=3), default_value = "3")]
    pub version: u32,
    /// The legacy image; `-` or none reads stdin.
    #[arg(long = "input", alias = "in", short = 'i', value_name = "IN")]
    pub input: Option<PathBuf>,
    /// The stream; `-` or none writes stdout (refused on a terminal).
    #[arg(long = "output", alias = "out", short = 'o', value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Print nothing on success.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Why the command stopped: the message and the exit code.
struct Fail(String, u8);

impl Fail {
    fn usage(m: impl Into<String>) -> Fail {
        Fail(m.into(), crate::EXIT_USAGE)
    }

    fn io(m: impl Into<String>) -> Fail {
        Fail(m.into(), crate::EXIT_IO)
    }

    fn invalid(m: impl Into<String>) -> Fail {
        Fail(m.into(), crate::EXIT_INVALID)
    }
}

impl From<LegacyError> for Fail {
    fn from(e: LegacyError) -> Fail {
        if e.is_io() {
            Fail::io(e.to_string())
        } else if matches!(e.kind, xcmig_stream::legacy::LegacyErrorKind::Usage(_))
            && e.part == "options"
        {
            Fail::usage(e.kind.to_string())
        } else {
            Fail::invalid(e.to_string())
        }
    }
}

/// `xcmig convert-legacy`.
pub fn run(args: Args) -> ExitCode {
    match run_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(line, code)) => {
            eprintln!("xcmig convert-legacy: {line}");
            ExitCode::from(code)
        }
    }
}

fn run_inner(args: &Args) -> Result<(), Fail> {
    let in_path = args.input.clone().unwrap_or_else(|| PathBuf::from("-"));
    let out_path = args.output.clone().unwrap_or_else(|| PathBuf::from("-"));
    if is_stdio(&in_path) && io::stdin().is_terminal() {
        return Err(Fail::usage(
            "no input given and stdin is a terminal; name one with -i IN, or pipe one in",
        ));
    }
    if is_stdio(&out_path) && io::stdout().is_terminal() {
        return Err(Fail::usage(
            "no output given and stdout is a terminal; name one with -o OUT, or redirect stdout",
        ));
    }
    if args.xl && args.format == FormatArg::Libxc {
        return Err(Fail::usage(
            "--xl needs --format libxl: an xl save file holds a libxl stream",
        ));
    }
    let guest = match args.guest {
        GuestArg::Pv => Guest::Pv,
        GuestArg::Hvm => Guest::Hvm,
    };
    let mut src: Box<dyn Read> = if is_stdio(&in_path) {
        Box::new(io::stdin().lock())
    } else {
        Box::new(
            File::open(&in_path)
                .map_err(|e| Fail::io(format!("cannot open {}: {e}", in_path.display())))?,
        )
    };
    // The first octets, for detection, put back in front of the rest.
    let mut prefix = Vec::new();
    (&mut src)
        .take(DETECT_PREFIX as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| Fail::io(format!("cannot read {}: {e}", in_path.display())))?;
    let (width, detected) = match args.width {
        WidthArg::W32 => (Width::Bits32, None),
        WidthArg::W64 => (Width::Bits64, None),
        WidthArg::Auto => {
            let skip = if args.xl {
                XlHeader::read_from(&mut &prefix[..])
                    .map(|h| h.encoded_len() as usize)
                    .map_err(|e| Fail::invalid(e.to_string()))?
            } else {
                xend_header_len(&prefix).unwrap_or(0)
            };
            let d = detect_width(prefix.get(skip..).unwrap_or_default(), guest);
            match d.width() {
                Some(w) => (w, Some(d.explain(guest))),
                None => return Err(Fail::invalid(d.explain(guest))),
            }
        }
    };
    let input = Cursor::new(prefix).chain(src);
    let (staged, dest): (Option<Staged>, Box<dyn Write>) = if is_stdio(&out_path) {
        (None, Box::new(io::stdout().lock()))
    } else {
        let (s, f) = Staged::create(&out_path).map_err(Fail::io)?;
        (Some(s), Box::new(f))
    };
    let opts = ConvertOptions {
        width,
        guest,
        format: match args.format {
            FormatArg::Libxc => OutputFormat::Libxc,
            FormatArg::Libxl => OutputFormat::Libxl,
        },
        version: Version::from_number(args.version).unwrap_or(Version::V3),
        xl: args.xl,
        trailer: Trailer::Image,
    };
    let out = BufWriter::with_capacity(1 << 20, dest);
    let summary = convert(input, out, &opts)?;
    if let Some(s) = staged {
        s.commit().map_err(Fail::io)?;
    }
    if !args.quiet {
        let mut lines = Vec::new();
        if let Some(d) = detected {
            lines.push(format!("width: {d}"));
        }
        let what = match opts.format {
            OutputFormat::Libxc => "libxc",
            OutputFormat::Libxl => "libxl",
        };
        lines.push(format!(
            "converted a legacy {guest} image ({width} toolstack, p2m_size {:#x}) to a {what} v{} \
             stream: {} batches, {} pages{}{}, {} octets in, {} out",
            summary.p2m_size,
            args.version,
            summary.batches,
            summary.pages,
            if guest == Guest::Pv {
                format!(", {} vCPUs", summary.vcpus)
            } else {
                String::new()
            },
            match summary.device_model {
                Some(n) => format!(", device model record of {n} octets"),
                None if guest == Guest::Hvm => ", no device model record".into(),
                None => String::new(),
            },
            summary.input_octets,
            summary.output_octets
        ));
        for n in &summary.notes {
            lines.push(format!("note: {n}"));
        }
        for l in lines {
            eprintln!("{l}");
        }
    }
    Ok(())
}
