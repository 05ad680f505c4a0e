//! Writes one layer from a file or directory and prints the `WrittenLayer`
//! JSON: `bake_layer SOURCE OUT_DIR [none|gzip[:LEVEL]|zstd[:LEVEL]]`.
//! Used by `scripts/bench-oci.sh` until the CLI `build` command exists.

use imgbake::image::blobs::BlobStore;
use imgbake::image::entries::{entries_from_dir, entries_from_files};
use imgbake::image::layer::{write_layer, Compression, LayerOptions};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bake_layer SOURCE OUT_DIR [none|gzip[:LEVEL]|zstd[:LEVEL]]");
        std::process::exit(2);
    }
    let source = PathBuf::from(&args[1]);
    let compression = match args.get(3).map(String::as_str).unwrap_or("none").split_once(':') {
        Some(("gzip", level)) => Compression::Gzip { level: level.parse().expect("gzip level") },
        Some(("zstd", level)) => Compression::Zstd { level: level.parse().expect("zstd level") },
        None if args.get(3).is_none_or(|a| a == "none") => Compression::None,
        None if args[3] == "gzip" => Compression::Gzip { level: 6 },
        None if args[3] == "zstd" => Compression::Zstd { level: 1 },
        _ => {
            eprintln!("unknown compression `{}`", args[3]);
            std::process::exit(2);
        }
    };
    let entries = if source.is_dir() {
        entries_from_dir(&source, "data")
    } else {
        let name = source.file_name().expect("file name").to_string_lossy().into_owned();
        entries_from_files(&[(source.clone(), format!("data/{name}"))])
    }
    .unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    let store = BlobStore::open(&PathBuf::from(&args[2])).expect("open blob store");
    match write_layer(&store, &entries, &LayerOptions::from_env(compression)) {
        Ok(layer) => println!("{}", serde_json::to_string(&layer).expect("json")),
        Err(e) => {
            let mut source: Option<&dyn std::error::Error> = Some(&e);
            eprint!("error: ");
            while let Some(error) = source {
                eprintln!("{error}");
                source = error.source();
                if source.is_some() {
                    eprint!("  Caused by: ");
                }
            }
            std::process::exit(1);
        }
    }
}
