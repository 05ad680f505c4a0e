//! The config.yaml loader against PyYAML itself (Truss reads config.yaml with
//! `yaml.safe_load`): thousands of generated documents, and the yaml-test-suite
//! cases vendored in `tests/yaml-test-suite/`, are loaded by both, and every one
//! must give the same answer: both refuse, or both accept with equal values.
//!
//! All documents go to ONE python3 process as JSON; it answers with each
//! document's value in a canonical JSON form that keeps what JSON cannot say
//! (ints of any size, float bits, inf/nan, bytes, dates, datetimes with their
//! UTC offset, sets, mapping order and non-string keys). The Rust side writes
//! the same form from imgbake's `Yaml` values.

mod support;

use imgbake::config::yaml_load::{self, Yaml, YamlValue};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Documents the generator makes; about a quarter of them are mutated into
/// (mostly) broken YAML.
const GENERATED: usize = 10_000;

const PYTHON: &str = r#"
import datetime, json, struct, sys, yaml

def canon(v):
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return {"int": str(v)}
    if isinstance(v, float):
        return {"float": "nan" if v != v else struct.pack(">d", v).hex()}
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return {"unencodable": True}
        return v
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, datetime.datetime):
        off = v.utcoffset()
        return {"datetime": "%04d-%02d-%02dT%02d:%02d:%02d.%06d" % (v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond),
                "offset": None if off is None else int(off.total_seconds()) // 60}
    if isinstance(v, datetime.date):
        return {"date": "%04d-%02d-%02d" % (v.year, v.month, v.day)}
    if isinstance(v, (list, tuple)):
        return [canon(x) for x in v]
    if isinstance(v, dict):
        return {"map": [[canon(k), canon(x)] for k, x in v.items()]}
    if isinstance(v, set):
        return {"set": sorted(json.dumps(canon(x), ensure_ascii=False, separators=(",", ":")) for x in v)}
    return {"unknown": type(v).__name__}

def decode_suite_markers(text):
    import re
    text = text.replace("<TAB>", "\t").replace("\u2423", " ").replace("\u21d4", "\ufeff")
    text = re.sub("\u2014*\u00bb", "\t", text)
    text = text.replace("\u21b5", "").replace("\u2190", "\r")
    if text.endswith("\u220e\n"):
        text = text[:-2]
    return text

request = json.load(sys.stdin)
docs = list(request["documents"])
for name, text in request["suite_files"]:
    for i, case in enumerate(yaml.safe_load(text)):
        if "yaml" in case:
            docs.append(decode_suite_markers(case["yaml"]))
out = []
for doc in docs:
    try:
        out.append({"doc": doc, "ok": canon(yaml.safe_load(doc))})
    except RecursionError:
        out.append({"doc": doc, "error": "RecursionError"})
    except Exception as e:
        out.append({"doc": doc, "error": "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")})
json.dump(out, sys.stdout)
"#;

/// imgbake's answer in the canonical form.
fn canonical(yaml: &Yaml) -> Value {
    match &yaml.value {
        YamlValue::Null => Value::Null,
        YamlValue::Bool(b) => json!(b),
        YamlValue::Int(i) => json!({ "int": i.to_string() }),
        YamlValue::BigInt(digits) => json!({ "int": digits }),
        YamlValue::Float(f) if f.is_nan() => json!({ "float": "nan" }),
        YamlValue::Float(f) => json!({ "float": format!("{:016x}", f.to_bits()) }),
        YamlValue::Str(s) => json!(s),
        YamlValue::Bytes(bytes) => json!({ "bytes": bytes.iter().map(|b| format!("{b:02x}")).collect::<String>() }),
        YamlValue::Timestamp(ts) => {
            let date = format!("{:04}-{:02}-{:02}", ts.year, ts.month, ts.day);
            match ts.time {
                None => json!({ "date": date }),
                Some(t) => json!({
                    "datetime": format!("{date}T{:02}:{:02}:{:02}.{:06}", t.hour, t.minute, t.second, t.microsecond),
                    "offset": t.offset_minutes,
                }),
            }
        }
        YamlValue::Seq(items) => Value::Array(items.iter().map(canonical).collect()),
        YamlValue::Set(items) => {
            let mut members: Vec<String> = items.iter().map(|item| canonical(item).to_string()).collect();
            members.sort();
            json!({ "set": members })
        }
        YamlValue::Map(entries) => {
            json!({ "map": entries.iter().map(|(k, v)| json!([canonical(k), canonical(v)])).collect::<Vec<_>>() })
        }
    }
}

fn imgbake_answer(doc: &str) -> Result<Value, String> {
    match yaml_load::load(doc) {
        Ok(document) => Ok(document.root.as_ref().map(canonical).unwrap_or(Value::Null)),
        Err(err) => Err(format!("{err} at {:?}", err.span)),
    }
}

/// Runs the PyYAML side once for all documents; `None` when PyYAML is missing
/// and tool tests are switched off.
fn pyyaml_answers(documents: &[String], suite_files: &[(String, String)]) -> Option<Vec<Value>> {
    let has_pyyaml = Command::new("python3").args(["-c", "import yaml"]).output().is_ok_and(|o| o.status.success());
    if !has_pyyaml {
        if support::tools::skipping_tool_tests() {
            eprintln!("skipping: PyYAML is not installed and IMGBAKE_SKIP_TOOL_TESTS=1");
            return None;
        }
        panic!("PyYAML is needed: `python3 -m pip install pyyaml` (bash .ci/run installs it)");
    }
    // `timeout` bounds the run; stdin is written from a thread while
    // wait_with_output drains stdout, so neither side can block the other.
    let mut child = Command::new("timeout")
        .args(["300", "python3", "-c", PYTHON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("timeout and python3 start");
    let request = json!({ "documents": documents, "suite_files": suite_files }).to_string();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(request.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "python3 failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    let Value::Array(answers) = serde_json::from_slice(&output.stdout).expect("PyYAML's answers are JSON") else {
        panic!("PyYAML's answers are not a list")
    };
    Some(answers)
}

/// Compares every answer; returns the mismatches, described.
fn mismatches(answers: &[Value]) -> Vec<String> {
    let mut found = Vec::new();
    for answer in answers {
        let doc = answer["doc"].as_str().unwrap();
        let ours = imgbake_answer(doc);
        let agree = match (&ours, answer.get("ok")) {
            (Ok(value), Some(expected)) => value == expected,
            (Err(_), None) => true,
            _ => false,
        };
        if !agree {
            found.push(format!(
                "document {doc:?}\n  PyYAML:  {}\n  imgbake: {}",
                answer.get("ok").map(|v| v.to_string()).unwrap_or_else(|| answer["error"].to_string()),
                match &ours {
                    Ok(v) => v.to_string(),
                    Err(e) => format!("error: {e}"),
                }
            ));
        }
    }
    found
}

fn assert_no_mismatches(answers: &[Value]) {
    let found = mismatches(answers);
    assert!(
        found.is_empty(),
        "{} of {} documents load differently:\n{}",
        found.len(),
        answers.len(),
        found.iter().take(25).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn generated_documents_load_as_pyyaml_loads_them() {
    let started = Instant::now();
    let mut generator = Generator::new(0x1a2b_3c4d);
    let documents: Vec<String> = (0..GENERATED).map(|_| generator.document()).collect();
    let Some(answers) = pyyaml_answers(&documents, &[]) else { return };
    let pyyaml_time = started.elapsed();
    assert_eq!(answers.len(), GENERATED);
    let accepted = answers.iter().filter(|a| a.get("ok").is_some()).count();
    assert_no_mismatches(&answers);
    // The mix must stay useful: most documents valid, a good share refused.
    assert!(accepted > GENERATED / 2 && accepted < GENERATED * 19 / 20, "PyYAML accepted {accepted} of {GENERATED}");
    eprintln!("{GENERATED} documents ({accepted} valid) compared in {:?} (PyYAML {pyyaml_time:?})", started.elapsed());
}

#[test]
fn yaml_test_suite_cases_load_as_pyyaml_loads_them() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/yaml-test-suite");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&path).unwrap()))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "expected the vendored suite cases in {}", dir.display());
    let Some(answers) = pyyaml_answers(&[], &files) else { return };
    assert!(answers.len() >= files.len());
    assert_no_mismatches(&answers);
}

#[test]
fn known_documents_give_pyyaml_values() {
    // Hand-picked cases, each one a rule the generator relies on.
    let documents: Vec<String> = [
        "example_model_input: {\n  \"prompt\": \"a cat\",\n  \"steps\": 30\n}\n",
        "a: {\nb: 1\n}\n",
        "model_metadata:\n  example_model_input: {\n  \"prompt\": \"a\",\n  \"n\": 1\n  }\n  tags: [a]\nrequirements: [\nvllm,\ntorch\n]\n",
        "on: yes\noff: No\ny: n\n",
        "a: [0o17, 0x1F, 017, 0b11, 1_000, 1:30, -0, +12, 08]\n",
        "a: [1e3, 1.0e+3, 1.0e3, .5, 1., .inf, -.Inf, .NaN, 1_0.5, 1:30.5]\n",
        "a: [2024-01-01, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.10 -5, 2024-1-1, 2002-12-14 1:02:03Z]\n",
        "a: 2023-02-29\n",
        "base: &b {x: 1, y: 2}\nmore: &m {y: 3, z: 4}\nc:\n  <<: [*b, *m]\n  x: 9\n",
        "a: 1\nb: 2\na: 3\n",
        "1: a\ntrue: b\n1.0: c\n",
        "a:\tb\n",
        "a: b\t# comment\n",
        "a:\n\t- b\n",
        "a: !!str 12\nb: !!int \"0x10\"\nc: !!float '1e3'\nd: ! 12\ne: !!binary aGVsbG8=\n",
        "a: !!set {x, y}\nb: !!omap [{x: 1}, {y: 2}]\n",
        "a: !foo x\n",
        "a: =\n",
        "=: x\n",
        "[a]: 1\n",
        "a: &x 1\nb: &x 2\n",
        "a: 1\n---\nb: 2\n",
        "",
        "--- |\n  text\n",
        "é: \"日本語 \\u00e9 🚀\"\n",
        "a: 123456789012345678901234567890\n",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let Some(answers) = pyyaml_answers(&documents, &[]) else { return };
    assert_no_mismatches(&answers);
}

/// A small seeded generator of YAML documents: block and flow collections at
/// varied indentation, flow mappings over many lines with the closing bracket
/// anywhere, anchors, aliases, merge keys, comments, tabs, block scalars,
/// quoted and plain scalars of every resolver type, unicode; then, for about a
/// quarter of them, one random edit (a deleted, inserted or doubled character,
/// or a line shifted) that usually breaks them.
struct Generator {
    rng: fastrand::Rng,
    anchors: Vec<String>,
    map_anchors: Vec<String>,
    next_anchor: usize,
}

const PLAIN: &[&str] = &[
    "x",
    "model",
    "hello world",
    "py311",
    "a/b",
    "http://example.com/x?y=1",
    "a:b",
    "key#not-comment",
    "-dash",
    "?q",
    "héllo",
    "日本語",
    "🚀 launch",
    "foo bar baz",
    "x-y_z",
    "v1.2.3",
    "1.2.3",
    "0.0.0.0",
    "$HOME",
    "50%",
    "a.b",
];
const RESOLVED: &[&str] = &[
    "yes",
    "No",
    "ON",
    "off",
    "true",
    "False",
    "y",
    "n",
    "~",
    "null",
    "Null",
    "NULL",
    "0",
    "-17",
    "+5",
    "0x1F",
    "0x_1f",
    "017",
    "0o17",
    "0b101",
    "0b_",
    "1_000",
    "1:30",
    "190:20:30",
    "08",
    "-0",
    "123456789012345678901234",
    "1.5",
    "-0.0",
    ".5",
    "1.",
    "1.0e+3",
    "1e3",
    "1.0e3",
    ".inf",
    "-.Inf",
    "+.INF",
    ".NaN",
    "+.nan",
    "1_0.5",
    "1:30.5",
    "6.02e+23",
    "2024-01-01",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10 -5",
    "2024-1-1",
    "2002-12-14 1:02:03Z",
    "2002-12-14T01:02:03.1234567+01:30",
    "1e",
    ".",
    "0x",
    "+",
    "-",
];
/// Scalars that PyYAML refuses to construct, or that are not YAML at all.
const BROKEN: &[&str] = &[
    "0b_",
    "2024-02-30",
    "2023-13-01 10:00:00",
    "<<",
    "=",
    "!foo x",
    "!!python/tuple [1]",
    "!!int x",
    "!!bool maybe",
    "\"bad \\q escape\"",
    "'unterminated",
    "*undefined",
    "@at",
    "`tick",
];
const QUOTED: &[&str] = &[
    "'it''s'",
    "\"tab\\tnewline\\n\"",
    "\"\\u00e9\\x41\"",
    "\"123\"",
    "'yes'",
    "\"\"",
    "''",
    "\"a: b\"",
    "'# not'",
    "\"multi\n  line\"",
    "'folded\n\n  para'",
    "\"🚀\"",
    "\"\\U0001F680\"",
];
const KEYS: &[&str] = &[
    "model_name",
    "python_version",
    "requirements",
    "a",
    "b",
    "c",
    "name",
    "\"quoted key\"",
    "'single'",
    "1",
    "1.0",
    "true",
    "yes",
    "on",
    "~",
    "null",
    "é",
    "2024-01-01",
    "0x10",
    "16",
    "key with spaces",
    "<<",
    "=",
];

impl Generator {
    fn new(seed: u64) -> Self {
        Generator { rng: fastrand::Rng::with_seed(seed), anchors: Vec::new(), map_anchors: Vec::new(), next_anchor: 0 }
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.usize(..items.len())]
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.u32(..100) < percent
    }

    fn document(&mut self) -> String {
        self.anchors.clear();
        self.map_anchors.clear();
        let mut out = String::new();
        if self.chance(10) {
            out.push_str("---\n");
        }
        if self.chance(10) {
            out.push_str("# leading comment\n");
        }
        match self.rng.u32(..10) {
            0 => self.block_seq(&mut out, 0, 0),
            1 => {
                let flow = self.flow(0);
                out.push_str(&flow);
                out.push('\n');
            }
            _ => self.block_map(&mut out, 0, 0),
        }
        if self.chance(5) {
            out.push_str("...\n");
        }
        if self.chance(25) {
            self.mutate(&mut out);
        }
        if self.chance(5) {
            out.truncate(out.trim_end_matches('\n').len());
        }
        out
    }

    fn scalar(&mut self, in_flow: bool) -> String {
        loop {
            let text = match self.rng.u32(..10) {
                0 if self.chance(8) => self.pick(BROKEN).to_string(),
                0..=3 => self.pick(RESOLVED).to_string(),
                4..=6 => self.pick(PLAIN).to_string(),
                7 => self.pick(QUOTED).to_string(),
                8 => format!("!!str {}", self.pick(RESOLVED)),
                _ => format!("{} {}", self.pick(PLAIN), self.pick(RESOLVED)),
            };
            // Flow indicators inside plain scalars are tested by mutation only.
            if !in_flow || text.starts_with(['\'', '"']) || !text.contains([',', '[', ']', '{', '}', '#']) {
                return text;
            }
        }
    }

    fn key(&mut self) -> String {
        if self.chance(5) {
            return "? complex".to_string();
        }
        self.pick(KEYS).to_string()
    }

    fn anchor(&mut self, is_map: bool) -> String {
        if !self.chance(15) {
            return String::new();
        }
        self.next_anchor += 1;
        // Now and then a name used before: PyYAML refuses a duplicate anchor.
        let name = if self.chance(1) {
            format!("a{}", self.next_anchor.saturating_sub(1))
        } else {
            format!("a{}", self.next_anchor)
        };
        self.anchors.push(name.clone());
        if is_map {
            self.map_anchors.push(name.clone());
        }
        format!("&{name} ")
    }

    fn alias(&mut self) -> Option<String> {
        if self.anchors.is_empty() || !self.chance(30) {
            return None;
        }
        let name = self.anchors[self.rng.usize(..self.anchors.len())].clone();
        Some(format!("*{name}"))
    }

    fn comment(&mut self) -> &'static str {
        match self.rng.u32(..20) {
            0 => "  # trailing",
            1 => "\t# after a tab",
            2 => " #",
            _ => "",
        }
    }

    fn block_map(&mut self, out: &mut String, indent: usize, depth: usize) {
        let pad = " ".repeat(indent);
        let entries = self.rng.usize(1..=4);
        for i in 0..entries {
            if self.chance(8) {
                out.push_str(&format!("{}# comment\n", " ".repeat(self.rng.usize(0..=indent + 2))));
            }
            if i == 0 && !self.map_anchors.is_empty() && self.chance(20) {
                let merge = if self.chance(50) {
                    format!("*{}", self.map_anchors[self.rng.usize(..self.map_anchors.len())])
                } else {
                    let a = self.map_anchors[self.rng.usize(..self.map_anchors.len())].clone();
                    let b = self.map_anchors[self.rng.usize(..self.map_anchors.len())].clone();
                    format!("[*{a}, *{b}]")
                };
                out.push_str(&format!("{pad}<<: {merge}\n"));
                continue;
            }
            let key = self.key();
            out.push_str(&format!("{pad}{key}:"));
            self.value_after_key(out, indent, depth);
        }
    }

    fn value_after_key(&mut self, out: &mut String, indent: usize, depth: usize) {
        let nest = depth < 3;
        if let Some(alias) = self.alias() {
            out.push_str(&format!(" {alias}{}\n", self.comment()));
            return;
        }
        match self.rng.u32(..12) {
            0..=3 => {
                let anchor = self.anchor(false);
                let scalar = self.scalar(false);
                out.push_str(&format!(" {anchor}{scalar}{}\n", self.comment()));
            }
            4 => {
                let anchor = self.anchor(false);
                let flow = self.flow(depth);
                out.push_str(&format!(" {anchor}{flow}{}\n", self.comment()));
            }
            5 | 6 => self.multiline_flow(out, indent),
            7 | 8 if nest => {
                let anchor = self.anchor(true);
                out.push_str(&format!(" {}{}\n", anchor.trim_end(), self.comment()));
                let step = [1, 2, 2, 4][self.rng.usize(..4)];
                self.block_map(out, indent + step, depth + 1);
            }
            9 if nest => {
                out.push('\n');
                let step = [0, 2, 2, 4][self.rng.usize(..4)];
                self.block_seq(out, indent + step, depth + 1);
            }
            10 => {
                let header = self.pick(&["|", ">", "|-", ">+", "|2", ">-"]);
                out.push_str(&format!(" {header}\n"));
                let pad = " ".repeat(indent + 2);
                for line in 0..self.rng.usize(1..=3) {
                    let extra = if self.chance(20) { "  " } else { "" };
                    out.push_str(&format!("{pad}{extra}line {line} {}\n", self.pick(PLAIN)));
                    if self.chance(15) {
                        out.push('\n');
                    }
                }
            }
            _ => out.push_str(&format!("{}\n", self.comment())),
        }
    }

    /// `key: {` … entries on their own lines … `}` with the closer at any indent.
    fn multiline_flow(&mut self, out: &mut String, indent: usize) {
        let is_map = self.chance(70);
        let anchor = self.anchor(is_map);
        let (open, close) = if is_map { ('{', '}') } else { ('[', ']') };
        out.push_str(&format!(" {anchor}{open}{}\n", if self.chance(10) { " # open" } else { "" }));
        let entries = self.rng.usize(1..=4);
        for i in 0..entries {
            let entry_indent = [0, indent, indent + 1, indent + 2, indent + 4][self.rng.usize(..5)];
            let value = self.scalar(true);
            let entry = if is_map {
                let key = self.pick(&["\"prompt\"", "\"steps\"", "k", "'x'", "n", "\"a b\"", "1"]);
                format!("{key}: {value}")
            } else {
                value
            };
            let comma = if i + 1 < entries || self.chance(30) { "," } else { "" };
            out.push_str(&format!("{}{entry}{comma}\n", " ".repeat(entry_indent)));
        }
        let close_indent = [0, indent, indent, indent + 2, indent.saturating_sub(1)][self.rng.usize(..5)];
        out.push_str(&format!("{}{close}{}\n", " ".repeat(close_indent), self.comment()));
    }

    fn block_seq(&mut self, out: &mut String, indent: usize, depth: usize) {
        let pad = " ".repeat(indent);
        for _ in 0..self.rng.usize(1..=3) {
            match self.rng.u32(..6) {
                0 | 1 => {
                    let scalar = self.scalar(false);
                    out.push_str(&format!("{pad}- {scalar}{}\n", self.comment()));
                }
                2 => {
                    let flow = self.flow(depth);
                    out.push_str(&format!("{pad}- {flow}\n"));
                }
                3 if depth < 3 => {
                    // A compact mapping: `- a: 1` then `  b: 2`.
                    out.push_str(&format!("{pad}- "));
                    let mut inner = String::new();
                    self.block_map(&mut inner, indent + 2, depth + 1);
                    out.push_str(inner.trim_start_matches(' '));
                }
                4 if depth < 3 => {
                    out.push_str(&format!("{pad}-\n"));
                    self.block_map(out, indent + 2, depth + 1);
                }
                _ => {
                    let tab = if self.chance(5) { "\t" } else { " " };
                    let scalar = self.scalar(false);
                    out.push_str(&format!("{pad}-{tab}{scalar}\n"));
                }
            }
        }
    }

    fn flow(&mut self, depth: usize) -> String {
        let items = self.rng.usize(0..=3);
        if self.chance(50) {
            let mut parts = Vec::new();
            for _ in 0..items {
                parts.push(if depth < 3 && self.chance(15) { self.flow(depth + 1) } else { self.scalar(true) });
            }
            format!("[{}]", parts.join(", "))
        } else {
            let mut parts = Vec::new();
            for _ in 0..items {
                let key = self.pick(&["a", "b", "\"c\"", "1", "yes", "x y"]);
                let value = if depth < 3 && self.chance(15) { self.flow(depth + 1) } else { self.scalar(true) };
                parts.push(if self.chance(10) { key.to_string() } else { format!("{key}: {value}") });
            }
            format!("{{{}}}", parts.join(", "))
        }
    }

    /// One random edit: delete, insert, double a character, or shift a line.
    fn mutate(&mut self, out: &mut String) {
        let chars: Vec<char> = out.chars().collect();
        if chars.is_empty() {
            return;
        }
        let at = self.rng.usize(..chars.len());
        let mut edited: Vec<char> = chars.clone();
        match self.rng.u32(..4) {
            0 => {
                edited.remove(at);
            }
            1 => {
                let c = self.pick(&[
                    "\t", ":", "{", "}", "[", "]", "-", "'", "\"", "#", "&", "*", "!", "|", ">", "%", "@", "`", ",",
                    " ", "\n", "?",
                ]);
                edited.insert(at, c.chars().next().unwrap());
            }
            2 => edited.insert(at, chars[at]),
            _ => {
                let line_start = chars[..at].iter().rposition(|&c| c == '\n').map_or(0, |p| p + 1);
                if self.chance(50) {
                    edited.insert(line_start, ' ');
                } else if edited.get(line_start) == Some(&' ') {
                    edited.remove(line_start);
                } else {
                    edited.insert(line_start, '\t');
                }
            }
        }
        *out = edited.into_iter().collect();
    }
}
