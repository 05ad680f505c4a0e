//! Import rates for `plan --calibrate`: how fast this machine's CPython
//! imports modules whose bytecode is cached (`import_rate`) and compiles
//! those whose bytecode is not (`compile_rate`), per byte of `.py` source.
//!
//! A fixed set of standard-library modules is imported in a fresh
//! interpreter (`-S -s`, empty environment) with `PYTHONPYCACHEPREFIX` set
//! to a directory of ours: Python then reads and writes `.pyc` only there,
//! never the installation's own `__pycache__`. One run fills the directory;
//! then [`RUNS`] runs import with every module's bytecode cached, and each
//! also times `compile()` of the same modules' source, in process: the
//! medians give both rates. The standard library compiles faster per byte
//! than the packages a cold start compiles (on the build VM, idle:
//! 13.2 MB/s for this set against 7.7 MB/s for the 14.4 MB of `.py` of
//! numpy, fastapi, pydantic, starlette and uvicorn, both with `compile()`),
//! so `compile_rate` is the set's rate × [`PACKAGES_COMPILE_FACTOR`].

use super::{io, CalibrateError, Measurement};
use std::path::Path;
use std::process::{Command, Stdio};

/// Modules present in CPython 3.8 to 3.13, pure Python for the most part,
/// about 4 MB of source together, without side effects at import.
const MODULES: &str = "email.mime.multipart,json,http.client,asyncio,xml.etree.ElementTree,unittest,argparse,\
decimal,logging.handlers,urllib.request,concurrent.futures,csv,tarfile,zipfile,typing,dataclasses,pathlib,\
inspect,pydoc,difflib,statistics,fractions,ast,dis,pickletools";

const RUNS: usize = 3;

/// Packages' source compiles at this share of the standard library set's
/// rate (7.7 / 13.2 MB/s, measured as the header says).
const PACKAGES_COMPILE_FACTOR: f64 = 0.58;

/// Prints `import_seconds modules source_bytes compile_seconds` for the
/// modules it imports.
const PROBE: &str = r#"import os, sys, time
names = sys.argv[1].split(",")
before = set(sys.modules)
start = time.perf_counter()
for name in names:
    __import__(name)
seconds = time.perf_counter() - start
files = [getattr(sys.modules[n], "__file__", None) or "" for n in set(sys.modules) - before]
source = [open(f, "rb").read() for f in files if f.endswith(".py")]
start = time.perf_counter()
for text in source:
    compile(text, "<probe>", "exec", dont_inherit=True)
compiling = time.perf_counter() - start
print(seconds, len(source), sum(len(text) for text in source), compiling)
"#;

/// One probe run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Probe {
    seconds: f64,
    modules: u64,
    source_bytes: u64,
    compile_seconds: f64,
}

fn parse_probe(line: &str) -> Option<Probe> {
    let mut fields = line.split_whitespace();
    let probe = Probe {
        seconds: fields.next()?.parse().ok()?,
        modules: fields.next()?.parse().ok()?,
        source_bytes: fields.next()?.parse().ok()?,
        compile_seconds: fields.next()?.parse().ok()?,
    };
    (probe.seconds > 0.0 && probe.compile_seconds > 0.0 && probe.source_bytes > 0).then_some(probe)
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
    Ok(rates(&cached, python, at))
}

/// The rates from the runs' medians: imports with cached bytecode read the
/// source's bytes at `import_rate`; `compile()` of them runs at `compile_rate`.
fn rates(cached: &[Probe], python: &str, at: &str) -> Vec<Measurement> {
    let source = cached[0].source_bytes as f64;
    let with_bytecode = median(cached.iter().map(|p| p.seconds).collect());
    let compile_seconds = median(cached.iter().map(|p| p.compile_seconds).collect());
    let what = format!(
        "`{python} -S` importing {} standard-library modules ({:.1} MB of .py) with their bytecode cached: {with_bytecode:.3} s; compile() of their source: {compile_seconds:.3} s (medians of {RUNS})",
        cached[0].modules,
        source / 1e6
    );
    let compile_rate = source / compile_seconds * PACKAGES_COMPILE_FACTOR;
    vec![
        Measurement { key: "import_rate", value: source / with_bytecode, how: format!("{at}: {what}") },
        Measurement {
            key: "compile_rate",
            value: compile_rate,
            how: format!(
                "{at}: {what}; × {PACKAGES_COMPILE_FACTOR} for packages' source (src/cost/calibrate/imports.rs)"
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_line_is_read_and_a_bad_one_is_not() {
        assert_eq!(
            parse_probe("0.25 164 4233229 0.5\n"),
            Some(Probe { seconds: 0.25, modules: 164, source_bytes: 4_233_229, compile_seconds: 0.5 })
        );
        assert_eq!(parse_probe("Traceback"), None);
        assert_eq!(parse_probe("0 1 2 3"), None);
        assert_eq!(parse_probe("0.1 1 2"), None);
    }

    #[test]
    fn the_rates_are_the_medians_over_the_source_bytes() {
        let probe =
            |seconds, compile_seconds| Probe { seconds, modules: 100, source_bytes: 4_000_000, compile_seconds };
        let cached = [probe(0.1, 2.0), probe(0.3, 0.5), probe(0.2, 1.0)];
        let found = rates(&cached, "python3", "test");
        // 4 MB in 0.2 s with bytecode; compile() of it in 1 s, × 0.58 for packages.
        assert_eq!(found[0].value, 20e6);
        assert!((found[1].value - 4e6 * PACKAGES_COMPILE_FACTOR).abs() < 1.0);
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
