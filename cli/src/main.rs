//! The `xcmig` command: check and describe Xen migration streams.
//!
//! - `xcmig verify [--format libxc|libxl|xl] [FILE|-]`: exit 0 when the
//!   stream is valid; otherwise exit 1 with one line on stdout naming the
//!   byte offset, the record (layer, index, type) and the rule broken.
//!   Warnings go to stderr and do not fail.
//! - `xcmig inspect [--format ...] [--json] [-v] FILE`: headers, record
//!   counts and octets by type, pages by PFINFO type, pfn range,
//!   checkpoints; `-v` lists every record.
//!
//! Without `--format`, the format is guessed from the first octets ("xl"
//! magic, "LibxlFmt", else libxc). Exit status: 0 valid, 1 invalid stream,
//! 2 usage error or unreadable input.

mod input;
mod inspect;
mod walk;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::walk::{Ending, Format, Visitor};

#[derive(Debug, Parser)]
#[command(
    name = "xcmig",
    version,
    about = "Check and describe Xen migration streams"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check a stream against the spec; exit 0 when valid.
    Verify {
        /// Stream format (guessed from the first octets when absent).
        #[arg(long, short = 'f', value_enum)]
        format: Option<Format>,
        /// Print nothing on success, and no warnings.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// The stream; `-` (the default) reads stdin.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Describe a stream: headers, record and page statistics.
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
        /// The stream; `-` reads stdin.
        file: PathBuf,
    },
    /// Print a shell completion script for xcmig to stdout.
    Completions {
        /// The shell: bash or zsh (fish, elvish and powershell also work).
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Counts warnings and echoes them to stderr.
struct VerifyVisitor {
    quiet: bool,
    warnings: u64,
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
}

/// Prints to stdout, ignoring a closed pipe (e.g. `| head`).
fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|_| o.flush());
}

fn open(file: &Path, format: Option<Format>) -> Result<(Format, input::Input), ExitCode> {
    let src = input::open(file).map_err(|e| {
        eprintln!("xcmig: cannot open {}: {e}", file.display());
        ExitCode::from(2)
    })?;
    let (guessed, inp) = input::detect(src).map_err(|e| {
        eprintln!("xcmig: cannot read {}: {e}", file.display());
        ExitCode::from(2)
    })?;
    Ok((format.unwrap_or(guessed), inp))
}

fn verify(file: PathBuf, format: Option<Format>, quiet: bool) -> ExitCode {
    let (format, inp) = match open(&file, format) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let mut v = VerifyVisitor {
        quiet,
        warnings: 0,
        records: 0,
    };
    match walk::walk(inp, format, &mut v) {
        Ok(done) => {
            if !quiet {
                let how = match done.ending {
                    Ending::End => "ends with END",
                    Ending::EofAfterCheckpoint => "ends after a complete checkpoint",
                };
                out(&format!(
                    "valid {format} stream: {} records, {} octets, {how}, {} warnings\n",
                    v.records, done.bytes, v.warnings
                ));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            out(&format!("invalid {format} stream: {e}\n"));
            ExitCode::from(if e.io { 2 } else { 1 })
        }
    }
}

fn inspect(file: PathBuf, format: Option<Format>, json: bool, verbose: bool) -> ExitCode {
    let (format, inp) = match open(&file, format) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let mut report = inspect::Report::new(format, verbose, json, !json);
    let result = walk::walk(inp, format, &mut report);
    let code = match &result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) if e.io => ExitCode::from(2),
        Err(_) => ExitCode::from(1),
    };
    let err_line = result.as_ref().err().map(|e| e.line.clone());
    report.finish(result.map(|d| (d.bytes, d.ending)).map_err(|e| e.line));
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => out(&format!("{s}\n")),
            Err(e) => {
                eprintln!("xcmig: cannot encode JSON: {e}");
                return ExitCode::from(2);
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
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "xcmig", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}
