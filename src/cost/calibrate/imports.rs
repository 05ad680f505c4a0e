//! Import rates for `plan --calibrate`: how fast this machine's CPython
//! imports modules whose bytecode is cached (`import_rate`) and compiles
//! those whose bytecode is not (`compile_rate`), per byte of `.py` source.
//!
//! A fixed set of standard-library modules is imported in a fresh
//! interpreter (`-S -s`, empty environment) with `PYTHONPYCACHEPREFIX` set
//! to a directory of ours: Python then reads and writes `.pyc` only there,
//! never the installation's own `__pycache__`. With the directory empty and
//! `PYTHONDONTWRITEBYTECODE=1` every module compiles; once it is filled,
//! every module loads its bytecode. Each way runs [`RUNS`] times and the
//! median counts; the probe reports the seconds and the `.py` bytes of the
//! modules it imported.

use super::{io, CalibrateError, Measurement};
use std::path::Path;
use std::process::{Command, Stdio};

/// Modules present in CPython 3.8 to 3.13, pure Python for the most part,
/// about 4 MB of source together, without side effects at import.
const MODULES: &str = "email.mime.multipart,json,http.client,asyncio,xml.etree.ElementTree,unittest,argparse,\
decimal,logging.handlers,urllib.request,concurrent.futures,csv,tarfile,zipfile,typing,dataclasses,pathlib,\
inspect,pydoc,difflib,statistics,fractions,ast,dis,pickletools";

const RUNS: usize = 3;

/// Prints `seconds modules source_bytes` for the modules it imports.
const PROBE: &str = r#"import os, sys, time
names = sys.argv[1].split(",")
before = set(sys.modules)
start = time.perf_counter()
for name in names:
    __import__(name)
seconds = time.perf_counter() - start
files = [getattr(sys.modules[n], "__file__", None) or "" for n in set(sys.modules) - before]
source = [f for f in files if f.endswith(".py")]
print(seconds, len(source), sum(os.path.getsize(f) for f in source))
"#;

/// One probe run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Probe {
    seconds: f64,
    modules: u64,
    source_bytes: u64,
}

fn parse_probe(line: &str) -> Option<Probe> {
    let mut fields = line.split_whitespace();
    let probe = Probe {
        seconds: fields.next()?.parse().ok()?,
        modules: fields.next()?.parse().ok()?,
        source_bytes: fields.next()?.parse().ok()?,
    };
    (probe.seconds > 0.0 && probe.source_bytes > 0).then_some(probe)
}

fn run_probe(
    python: &str,
    script: &Path,
    prefix: &Path,
    write_bytecode: bool,
) -> Result<Option<Probe>, CalibrateError> {
    let mut command = Command::new(python);
    command
        .args(["-S", "-s"])
        .arg(script)
        .arg(MODULES)
        .env_clear()
        .env("PYTHONPYCACHEPREFIX", prefix)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    if !write_bytecode {
        command.env("PYTHONDONTWRITEBYTECODE", "1");
    }
    let output = match command.output() {
        Ok(output) if output.status.success() => output,
        // No interpreter, or one that cannot import the set: not measured.
        _ => return Ok(None),
    };
    Ok(parse_probe(&String::from_utf8_lossy(&output.stdout)))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `import_rate` and `compile_rate` from `python` (`python3` in practice),
/// or nothing when it cannot run the probe.
pub fn measure_imports(python: &str, dir: &Path, at: &str) -> Result<Vec<Measurement>, CalibrateError> {
    let work = tempfile::tempdir_in(dir).map_err(io("creating the import probe's directory"))?;
    let script = work.path().join("probe.py");
    std::fs::write(&script, PROBE).map_err(io("writing the import probe"))?;
    let prefix = work.path().join("pycache");
    let mut compiled = Vec::new();
    for _ in 0..RUNS {
        match run_probe(python, &script, &prefix, false)? {
            Some(probe) => compiled.push(probe),
            None => return Ok(Vec::new()),
        }
    }
    if run_probe(python, &script, &prefix, true)?.is_none() {
        return Ok(Vec::new());
    }
    let mut cached = Vec::new();
    for _ in 0..RUNS {
        match run_probe(python, &script, &prefix, false)? {
            Some(probe) => cached.push(probe),
            None => return Ok(Vec::new()),
        }
    }
    Ok(rates(&compiled, &cached, python, at))
}

/// The rates from the two ways' medians: cached imports read the source's
/// bytes at `import_rate`; compiling adds the difference.
fn rates(compiled: &[Probe], cached: &[Probe], python: &str, at: &str) -> Vec<Measurement> {
    let source = cached[0].source_bytes as f64;
    let with_bytecode = median(cached.iter().map(|p| p.seconds).collect());
    let without = median(compiled.iter().map(|p| p.seconds).collect());
    let what = format!(
        "`{python} -S` importing {} standard-library modules ({:.1} MB of .py): {with_bytecode:.3} s with their bytecode cached, {without:.3} s compiling (medians of {RUNS})",
        cached[0].modules,
        source / 1e6
    );
    let compile_seconds = (without - with_bytecode).max(with_bytecode * 0.1);
    vec![
        Measurement { key: "import_rate", value: source / with_bytecode, how: format!("{at}: {what}") },
        Measurement { key: "compile_rate", value: source / compile_seconds, how: format!("{at}: {what}") },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_line_is_read_and_a_bad_one_is_not() {
        assert_eq!(
            parse_probe("0.25 164 4233229\n"),
            Some(Probe { seconds: 0.25, modules: 164, source_bytes: 4_233_229 })
        );
        assert_eq!(parse_probe("Traceback"), None);
        assert_eq!(parse_probe("0 1 2"), None);
    }

    #[test]
    fn compiling_is_the_difference_of_the_two_medians() {
        let probe = |seconds| Probe { seconds, modules: 100, source_bytes: 4_000_000 };
        let compiled = [probe(2.0), probe(1.2), probe(1.1)];
        let cached = [probe(0.1), probe(0.3), probe(0.2)];
        let found = rates(&compiled, &cached, "python3", "test");
        // 4 MB in 0.2 s cached; compiling 1.2 − 0.2 = 1 s.
        assert_eq!(found[0].value, 20e6);
        assert_eq!(found[1].value, 4e6);
    }

    #[test]
    fn this_machines_python_gives_rates_where_compiling_is_slower() {
        let dir = tempfile::tempdir().unwrap();
        let found = measure_imports("python3", dir.path(), "test").unwrap();
        if found.is_empty() {
            // No python3 here: nothing is claimed.
            assert!(std::process::Command::new("python3").arg("-V").output().is_err());
            return;
        }
        let rate = |key| found.iter().find(|m| m.key == key).unwrap().value;
        assert!(rate("import_rate") > rate("compile_rate"), "{found:?}");
        let missing = measure_imports("/nonexistent/python3", dir.path(), "test").unwrap();
        assert!(missing.is_empty());
    }
}
