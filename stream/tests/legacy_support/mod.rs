//! What the legacy image tests share: conversion options and a conversion
//! into memory.
#![allow(dead_code)]

use xcmig_stream::legacy::{
    convert, ConvertOptions, Guest, LegacyError, OutputFormat, Trailer, Width,
};
use xcmig_stream::Version;

/// Options for a whole image of a `bits`-bit toolstack, written as v3.
pub fn opts(bits: u32, guest: Guest, format: OutputFormat) -> ConvertOptions {
    ConvertOptions {
        width: Width::from_bits(bits).unwrap(),
        guest,
        format,
        version: Version::V3,
        xl: false,
        trailer: Trailer::Image,
    }
}

/// Converts `img` into a new buffer.
pub fn run(img: &[u8], o: &ConvertOptions) -> Result<Vec<u8>, LegacyError> {
    let mut out = Vec::new();
    convert(img, &mut out, o).map(|_| out)
}
