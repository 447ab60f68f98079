//! The `xcmig` command: check and describe Xen migration streams.
//!
//! - `xcmig verify [--format libxc|libxl|xl|xenstore] [FILE|-]`: exit 0 when the
//!   stream is valid; otherwise exit 1 with one line on stdout naming the
//!   byte offset, the record (layer, index, type) and the rule broken.
//!   Warnings and notes (deviations stock libxenguest always makes) go to
//!   stderr and do not fail.
//! - `xcmig inspect [--format ...] [--json] [-v] [FILE|-]`: headers, record
//!   counts and octets by type, pages by PFINFO type, distinct and re-sent
//!   pfns, vCPUs, HVM params, checkpoints; `-v` lists every record.
//!   For a xenstore stream: nodes as a tree with permissions and values,
//!   watches, transactions, connections, domains and quotas.
//! - `xcmig convert [--from F] [--to F] [--version 2|3] [-i IN] [-o OUT]`:
//!   wraps, unwraps and re-versions a stream (see `convert.rs`).
//! - `xcmig convert-legacy --guest pv|hvm [--width 32|64|auto] [--format
//!   libxc|libxl] [--xl] [-i IN] [-o OUT]`: a legacy (Xen 4.5 and earlier)
//!   image to a v3 stream (see `convert_legacy.rs`).
//! - `xcmig completions bash|zsh`: a completion script.
//!
//! Without `--format`, the format is guessed from the first octets ("xl"
//! magic, "LibxlFmt", "xenstore", else libxc). Exit status: [`EXIT_STATUS`].

mod convert;
mod convert_legacy;
mod input;
mod inspect;
mod staged;
mod walk;
mod xenstore;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::walk::{Ending, Format, Visitor};

/// Exit codes.
const EXIT_INVALID: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_IO: u8 = 3;

/// The exit status table of `--help`.
const EXIT_STATUS: &str = "Exit status:
  0  the stream is valid (warnings and notes do not change this)
  1  the stream is invalid or incomplete
  2  usage error (also: no FILE while stdin is a terminal)
  3  I/O error: the input cannot be opened or read";

#[derive(Debug, Parser)]
#[command(
    name = "xcmig",
    version,
    about = "Check and describe Xen migration streams",
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check a stream against the spec; exit 0 when valid.
    #[command(after_help = EXIT_STATUS)]
    Verify {
        /// Stream format (guessed from the first octets when absent).
        #[arg(long, short = 'f', value_enum)]
        format: Option<Format>,
        /// Print nothing on success, and no warnings.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// The stream; `-` or none reads stdin.
        file: Option<PathBuf>,
    },
    /// Describe a stream: headers, record and page statistics.
    #[command(after_help = EXIT_STATUS)]
    Inspect {
        /// Stream format (guessed from the first octets when absent).
        #[arg(long, short = 'f', value_enum)]
        format: Option<Format>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// List every record (offset, index, type, length, summary).
        #[arg(long, short = 'v')]
        verbose: bool,
        /// The stream; `-` or none reads stdin.
        file: Option<PathBuf>,
    },
    /// Convert between libxc, libxl and xl images; re-version libxc v2/v3.
    #[command(after_help = EXIT_STATUS)]
    Convert(convert::Args),
    /// Convert a legacy image (Xen 4.5 and earlier, 32- or 64-bit
    /// toolstack) to a v3 or v2 stream.
    #[command(after_help = EXIT_STATUS)]
    ConvertLegacy(convert_legacy::Args),
    /// Print a shell completion script for xcmig to stdout.
    Completions {
        /// The shell: bash or zsh (fish, elvish and powershell also work).
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Counts warnings and notes and echoes them to stderr.
struct VerifyVisitor {
    quiet: bool,
    warnings: u64,
    notes: u64,
    records: u64,
}

impl Visitor for VerifyVisitor {
    fn record(&mut self, _r: &walk::RecordInfo) {
        self.records += 1;
    }

    fn warning(&mut self, w: &str) {
        self.warnings += 1;
        if !self.quiet {
            eprintln!("warning: {w}");
        }
    }

    fn note(&mut self, n: &str) {
        self.notes += 1;
        if !self.quiet {
            eprintln!("note: {n}");
        }
    }
}

/// `n` and the noun, in the singular for 1.
pub fn plural(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// Prints to stdout, ignoring a closed pipe (e.g. `| head`).
fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|_| o.flush());
}

fn open(
    cmd: &str,
    file: Option<&Path>,
    format: Option<Format>,
) -> Result<(Format, input::Input), ExitCode> {
    if file.is_none() && std::io::stdin().is_terminal() {
        eprintln!(
            "xcmig {cmd}: no FILE given and stdin is a terminal; name a stream file, or pipe one in \
             (xcmig {cmd} - < FILE)"
        );
        return Err(ExitCode::from(EXIT_USAGE));
    }
    let file = file.unwrap_or(Path::new("-"));
    let src = input::open(file).map_err(|e| {
        eprintln!("xcmig: cannot open {}: {e}", file.display());
        ExitCode::from(EXIT_IO)
    })?;
    let (guessed, inp) = input::detect(src).map_err(|e| {
        eprintln!("xcmig: cannot read {}: {e}", file.display());
        ExitCode::from(EXIT_IO)
    })?;
    Ok((format.unwrap_or(guessed), inp))
}

fn verify(file: Option<PathBuf>, format: Option<Format>, quiet: bool) -> ExitCode {
    let (format, inp) = match open("verify", file.as_deref(), format) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let mut v = VerifyVisitor {
        quiet,
        warnings: 0,
        notes: 0,
        records: 0,
    };
    match walk::walk(inp, format, &mut v) {
        Ok(done) => {
            if !quiet {
                let how = match done.ending {
                    Ending::End => "ends with END",
                    Ending::EofAfterCheckpoint => "ends after a complete checkpoint",
                };
                let notes = if v.notes > 0 {
                    format!(", {}", plural(v.notes, "note", "notes"))
                } else {
                    String::new()
                };
                out(&format!(
                    "valid {format} stream: {}, {}, {how}, {}{notes}\n",
                    plural(v.records, "record", "records"),
                    plural(done.bytes, "octet", "octets"),
                    plural(v.warnings, "warning", "warnings"),
                ));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            out(&format!("invalid {format} stream: {e}\n"));
            ExitCode::from(if e.io { EXIT_IO } else { EXIT_INVALID })
        }
    }
}

fn inspect(file: Option<PathBuf>, format: Option<Format>, json: bool, verbose: bool) -> ExitCode {
    let (format, inp) = match open("inspect", file.as_deref(), format) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if format == Format::Xenstore {
        return report_inspection(inp, format, xenstore::XsReport::new(verbose, !json), json);
    }
    report_inspection(
        inp,
        format,
        inspect::Report::new(format, verbose, json, !json),
        json,
    )
}

/// What `inspect` fills while it walks a stream and prints at the end.
trait Inspection: Visitor + serde::Serialize {
    /// The walk's result: total octets and how the stream ended, or the
    /// error line.
    fn finish(&mut self, result: Result<(u64, Ending), String>);
    /// The text report.
    fn text(&self) -> String;
}

impl Inspection for inspect::Report {
    fn finish(&mut self, result: Result<(u64, Ending), String>) {
        inspect::Report::finish(self, result)
    }
    fn text(&self) -> String {
        inspect::Report::text(self)
    }
}

impl Inspection for xenstore::XsReport {
    fn finish(&mut self, result: Result<(u64, Ending), String>) {
        xenstore::XsReport::finish(self, result)
    }
    fn text(&self) -> String {
        xenstore::XsReport::text(self)
    }
}

/// Walks `inp` into `report` and prints it (text or JSON); the error line
/// of an invalid stream goes to stderr.
fn report_inspection<I: Inspection>(
    inp: input::Input,
    format: Format,
    mut report: I,
    json: bool,
) -> ExitCode {
    let result = walk::walk(inp, format, &mut report);
    let code = match &result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) if e.io => ExitCode::from(EXIT_IO),
        Err(_) => ExitCode::from(EXIT_INVALID),
    };
    let err_line = result.as_ref().err().map(|e| e.line.clone());
    report.finish(result.map(|d| (d.bytes, d.ending)).map_err(|e| e.line));
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => out(&format!("{s}\n")),
            Err(e) => {
                eprintln!("xcmig: cannot encode JSON: {e}");
                return ExitCode::from(EXIT_IO);
            }
        }
    } else {
        out(&report.text());
    }
    if let Some(line) = err_line {
        eprintln!("invalid {format} stream: {line}");
    }
    code
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Verify {
            format,
            quiet,
            file,
        } => verify(file, format, quiet),
        Cmd::Inspect {
            format,
            json,
            verbose,
            file,
        } => inspect(file, format, json, verbose),
        Cmd::Convert(args) => convert::run(args),
        Cmd::ConvertLegacy(args) => convert_legacy::run(args),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "xcmig", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}
