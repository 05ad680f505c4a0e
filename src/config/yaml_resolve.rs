//! PyYAML's YAML 1.1 scalar rules: which tag a plain scalar resolves to, and
//! how each standard tag's text becomes a value.
//!
//! This is a port of `yaml/resolver.py` (the implicit resolvers, with their
//! regular expressions copied as they are) and of the scalar constructors of
//! `yaml/constructor.py` (`SafeConstructor`), so that `config.yaml` means to
//! imgbake exactly what it means to Truss, which reads it with `yaml.safe_load`.
//! Python's `$` also matches before a final newline; the patterns end in
//! `\n?\z` for that reason. Python's `int()` and `float()` are ported for the
//! inputs those constructors can hand them (ASCII digits).

use regex::Regex;
use std::sync::LazyLock;

pub const NULL: &str = "tag:yaml.org,2002:null";
pub const BOOL: &str = "tag:yaml.org,2002:bool";
pub const INT: &str = "tag:yaml.org,2002:int";
pub const FLOAT: &str = "tag:yaml.org,2002:float";
pub const BINARY: &str = "tag:yaml.org,2002:binary";
pub const TIMESTAMP: &str = "tag:yaml.org,2002:timestamp";
pub const OMAP: &str = "tag:yaml.org,2002:omap";
pub const PAIRS: &str = "tag:yaml.org,2002:pairs";
pub const SET: &str = "tag:yaml.org,2002:set";
pub const STR: &str = "tag:yaml.org,2002:str";
pub const SEQ: &str = "tag:yaml.org,2002:seq";
pub const MAP: &str = "tag:yaml.org,2002:map";
pub const MERGE: &str = "tag:yaml.org,2002:merge";
pub const VALUE: &str = "tag:yaml.org,2002:value";
const YAML: &str = "tag:yaml.org,2002:yaml";

/// The implicit resolvers in PyYAML's registration order, each with the first
/// characters it is tried for (`""` stands for the empty scalar).
static RESOLVERS: LazyLock<Vec<(&'static str, Regex, &'static str)>> = LazyLock::new(|| {
    let resolver = |tag, pattern: &str, first| (tag, Regex::new(&format!(r"^(?:{pattern})\n?\z")).unwrap(), first);
    vec![
        resolver(BOOL, "yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF", "yYnNtTfFoO"),
        resolver(
            FLOAT,
            r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
            "-+0123456789.",
        ),
        resolver(
            INT,
            r"[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
            "-+0123456789",
        ),
        resolver(MERGE, "<<", "<"),
        resolver(NULL, "~|null|Null|NULL|", "~nN"),
        resolver(TIMESTAMP, TIMESTAMP_SHAPE, "0123456789"),
        resolver(VALUE, "=", "="),
        resolver(YAML, r"!|&|\*", "!&*"),
    ]
});

const TIMESTAMP_SHAPE: &str = r"[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?";

/// The constructor's pattern, with the parts named.
static TIMESTAMP_PARTS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?P<year>[0-9][0-9][0-9][0-9])-(?P<month>[0-9][0-9]?)-(?P<day>[0-9][0-9]?)(?:(?:[Tt]|[ \t]+)(?P<hour>[0-9][0-9]?):(?P<minute>[0-9][0-9]):(?P<second>[0-9][0-9])(?:\.(?P<fraction>[0-9]*))?(?:[ \t]*(?P<tz>Z|(?P<tz_sign>[-+])(?P<tz_hour>[0-9][0-9]?)(?::(?P<tz_minute>[0-9][0-9]))?))?)?\n?\z",
    )
    .unwrap()
});

/// The tag of an untagged plain scalar (`Resolver.resolve` for a scalar with `implicit[0]`).
pub fn resolve_plain(value: &str) -> &'static str {
    let first = value.chars().next();
    for (tag, pattern, firsts) in RESOLVERS.iter() {
        let applies = match first {
            None => *tag == NULL,
            Some(c) => firsts.contains(c),
        };
        if applies && pattern.is_match(value) {
            return tag;
        }
    }
    STR
}

/// An integer of any size, as Python has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Int {
    Small(i64),
    /// Outside i64: the decimal digits with their sign.
    Big(String),
}

/// `construct_yaml_bool`.
pub fn construct_bool(value: &str) -> Result<bool, String> {
    match value.to_lowercase().as_str() {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(format!("`{value}` is not a boolean")),
    }
}

/// `construct_yaml_int`.
pub fn construct_int(text: &str) -> Result<Int, String> {
    let invalid = || format!("`{text}` is not an integer");
    let value: String = text.chars().filter(|&c| c != '_').collect();
    let negative = value.starts_with('-');
    let value = value.strip_prefix(['-', '+']).unwrap_or(&value);
    if value.is_empty() {
        return Err(invalid());
    }
    let magnitude = if value == "0" {
        PyInt::zero()
    } else if let Some(digits) = value.strip_prefix("0b") {
        python_int(digits, 2).ok_or_else(invalid)?
    } else if let Some(digits) = value.strip_prefix("0x") {
        python_int(digits, 16).ok_or_else(invalid)?
    } else if value.starts_with('0') {
        python_int(value, 8).ok_or_else(invalid)?
    } else if value.contains(':') {
        let mut total: i128 = 0;
        for part in value.split(':') {
            let digit = python_int(part, 10).and_then(|d| d.to_i128()).ok_or_else(invalid)?;
            total = total.checked_mul(60).and_then(|t| t.checked_add(digit)).ok_or_else(invalid)?;
        }
        PyInt::from_i128(total)
    } else {
        python_int(value, 10).ok_or_else(invalid)?
    };
    Ok(if negative { magnitude.negate() } else { magnitude }.into_int())
}

/// `construct_yaml_float`.
pub fn construct_float(text: &str) -> Result<f64, String> {
    let invalid = || format!("`{text}` is not a number");
    let value: String = text.chars().filter(|&c| c != '_').collect::<String>().to_lowercase();
    if value.is_empty() {
        return Err(invalid());
    }
    let sign = if value.starts_with('-') { -1.0 } else { 1.0 };
    let value = value.strip_prefix(['-', '+']).unwrap_or(&value);
    if value == ".inf" {
        return Ok(sign * f64::INFINITY);
    }
    if value == ".nan" {
        return Ok(f64::NAN);
    }
    if value.contains(':') {
        let mut digits = value
            .split(':')
            .map(|part| python_float(part).ok_or_else(invalid))
            .collect::<Result<Vec<f64>, String>>()?;
        digits.reverse();
        let (mut total, mut base) = (0.0, 1.0);
        for digit in digits {
            total += digit * base;
            base *= 60.0;
        }
        return Ok(sign * total);
    }
    Ok(sign * python_float(value).ok_or_else(invalid)?)
}

/// Python's `float(str)` for ASCII text.
fn python_float(text: &str) -> Option<f64> {
    let text = text.trim_matches(char::is_whitespace);
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let special = matches!(unsigned.to_ascii_lowercase().as_str(), "inf" | "infinity" | "nan");
    let decimal = !unsigned.is_empty()
        && unsigned.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && unsigned.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '.');
    if !(special || decimal) {
        return None;
    }
    text.parse::<f64>().ok()
}

/// A date, or a date and time (with its UTC offset in minutes when one is given),
/// as `construct_yaml_timestamp` makes `datetime.date` / `datetime.datetime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub time: Option<Time>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub microsecond: u32,
    pub offset_minutes: Option<i32>,
}

impl Timestamp {
    /// Python's `==`: a date never equals a datetime, aware datetimes compare as
    /// instants, and a naive one never equals an aware one.
    pub fn python_eq(&self, other: &Timestamp) -> bool {
        match (self.time, other.time) {
            (None, None) => self == other,
            (Some(a), Some(b)) => match (a.offset_minutes, b.offset_minutes) {
                (None, None) => self == other,
                (Some(_), Some(_)) => self.utc_micros() == other.utc_micros(),
                _ => false,
            },
            _ => false,
        }
    }

    fn utc_micros(&self) -> i128 {
        let days = days_from_civil(self.year as i64, self.month, self.day) as i128;
        let time = self.time.expect("a datetime");
        let seconds = days * 86_400 + (time.hour * 3600 + time.minute * 60 + time.second) as i128
            - time.offset_minutes.unwrap_or(0) as i128 * 60;
        seconds * 1_000_000 + time.microsecond as i128
    }
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `construct_yaml_timestamp`: Python's `datetime` refuses impossible dates and times.
pub fn construct_timestamp(value: &str) -> Result<Timestamp, String> {
    let caps = TIMESTAMP_PARTS.captures(value).ok_or_else(|| format!("`{value}` is not a timestamp"))?;
    let number = |name: &str| caps.name(name).map(|m| m.as_str().parse::<u32>().expect("digits"));
    let (year, month, day) = (number("year").unwrap(), number("month").unwrap(), number("day").unwrap());
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > month_days[month as usize - 1] {
        return Err(format!("`{value}` is not a real date"));
    }
    let Some(hour) = number("hour") else {
        return Ok(Timestamp { year, month, day, time: None });
    };
    let (minute, second) = (number("minute").unwrap(), number("second").unwrap());
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("`{value}` is not a real time of day"));
    }
    let microsecond = match caps.name("fraction").map(|m| m.as_str()).filter(|f| !f.is_empty()) {
        Some(fraction) => {
            let digits: String = fraction.chars().take(6).collect();
            format!("{digits:0<6}").parse().expect("digits")
        }
        None => 0,
    };
    let offset_minutes = match caps.name("tz_sign") {
        Some(sign) => {
            let minutes = number("tz_hour").unwrap() as i32 * 60 + number("tz_minute").unwrap_or(0) as i32;
            if minutes >= 24 * 60 {
                return Err(format!("`{value}`: a UTC offset must be less than 24 hours"));
            }
            Some(if sign.as_str() == "-" { -minutes } else { minutes })
        }
        None => caps.name("tz").map(|_| 0),
    };
    Ok(Timestamp { year, month, day, time: Some(Time { hour, minute, second, microsecond, offset_minutes }) })
}

/// `construct_yaml_binary`: `base64.decodebytes`, which skips characters outside
/// the alphabet and stops at the padding that ends a quad.
pub fn construct_binary(value: &str) -> Result<Vec<u8>, String> {
    if !value.is_ascii() {
        return Err("base64 data must be ASCII".to_string());
    }
    let (mut out, mut quad, mut bits, mut pads) = (Vec::new(), 0u32, 0u32, 0u32);
    for c in value.bytes() {
        if c == b'=' {
            pads += 1;
            if quad >= 2 && quad + pads >= 4 {
                quad = 0;
                break;
            }
            continue;
        }
        let Some(sextet) = base64_value(c) else { continue };
        pads = 0;
        bits = (bits << 6) | sextet;
        quad += 1;
        if quad >= 2 {
            out.push((bits >> (2 * (4 - quad))) as u8);
            bits &= (1 << (2 * (4 - quad))) - 1;
        }
        if quad == 4 {
            quad = 0;
            bits = 0;
        }
    }
    match quad {
        0 => Ok(out),
        1 => Err("invalid base64: one data character too many".to_string()),
        _ => Err("invalid base64: incorrect padding".to_string()),
    }
}

fn base64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// A Python int: a sign and a magnitude in base 10^9, least significant first.
#[derive(Debug, Clone)]
struct PyInt {
    negative: bool,
    limbs: Vec<u32>,
}

const LIMB: u64 = 1_000_000_000;

impl PyInt {
    fn zero() -> Self {
        PyInt { negative: false, limbs: Vec::new() }
    }

    fn mul_add(&mut self, factor: u32, addend: u32) {
        let mut carry = addend as u64;
        for limb in &mut self.limbs {
            let v = *limb as u64 * factor as u64 + carry;
            *limb = (v % LIMB) as u32;
            carry = v / LIMB;
        }
        while carry > 0 {
            self.limbs.push((carry % LIMB) as u32);
            carry /= LIMB;
        }
    }

    fn negate(mut self) -> Self {
        self.negative = !self.negative && !self.limbs.is_empty();
        self
    }

    fn from_i128(value: i128) -> Self {
        let mut magnitude = value.unsigned_abs();
        let mut limbs = Vec::new();
        while magnitude > 0 {
            limbs.push((magnitude % LIMB as u128) as u32);
            magnitude /= LIMB as u128;
        }
        PyInt { negative: value < 0, limbs }
    }

    fn to_i128(&self) -> Option<i128> {
        let mut value: i128 = 0;
        for &limb in self.limbs.iter().rev() {
            value = value.checked_mul(LIMB as i128)?.checked_add(limb as i128)?;
        }
        Some(if self.negative { -value } else { value })
    }

    fn into_int(self) -> Int {
        if let Some(small) = self.to_i128().and_then(|v| i64::try_from(v).ok()) {
            return Int::Small(small);
        }
        let mut digits = String::from(if self.negative { "-" } else { "" });
        for (i, limb) in self.limbs.iter().rev().enumerate() {
            if i == 0 {
                digits.push_str(&limb.to_string());
            } else {
                digits.push_str(&format!("{limb:09}"));
            }
        }
        Int::Big(digits)
    }
}

/// Python's `int(text, base)` for ASCII digits: surrounding whitespace, a sign,
/// and the base's own prefix (`0x` for 16, `0o` for 8, `0b` for 2) are allowed.
fn python_int(text: &str, base: u32) -> Option<PyInt> {
    let text = text.trim_matches(char::is_whitespace);
    let negative = text.starts_with('-');
    let mut digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let prefix = match base {
        16 => Some("0x"),
        8 => Some("0o"),
        2 => Some("0b"),
        _ => None,
    };
    if let Some(prefix) = prefix {
        if digits.len() > 2 && digits[..2].eq_ignore_ascii_case(prefix) {
            digits = &digits[2..];
        }
    }
    if digits.is_empty() {
        return None;
    }
    let mut value = PyInt::zero();
    for c in digits.chars() {
        value.mul_add(base, c.to_digit(base)?);
    }
    Some(if negative { value.negate() } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_resolve_as_pyyaml_does() {
        for (text, tag) in [
            ("yes", BOOL),
            ("Off", BOOL),
            ("y", STR),
            ("1e3", STR),
            ("1.0e+3", FLOAT),
            ("1.0e3", STR),
            (".inf", FLOAT),
            ("-.Inf", FLOAT),
            ("+.nan", STR),
            ("0o17", STR),
            ("0x1F", INT),
            ("017", INT),
            ("1_000", INT),
            ("1:30", INT),
            ("", NULL),
            ("~", NULL),
            ("2024-01-01", TIMESTAMP),
            ("2024-1-1 1:02:03", TIMESTAMP),
            ("<<", MERGE),
            ("=", VALUE),
        ] {
            assert_eq!(resolve_plain(text), tag, "{text:?}");
        }
    }

    #[test]
    fn integers_are_constructed_as_python_does() {
        assert_eq!(construct_int("0x_1F").unwrap(), Int::Small(31));
        assert_eq!(construct_int("-017").unwrap(), Int::Small(-15));
        assert_eq!(construct_int("0b101").unwrap(), Int::Small(5));
        assert_eq!(construct_int("-1:30").unwrap(), Int::Small(-90));
        assert_eq!(construct_int("0_").unwrap(), Int::Small(0));
        assert_eq!(
            construct_int("123456789012345678901234567890").unwrap(),
            Int::Big("123456789012345678901234567890".into())
        );
        assert!(construct_int("0b_").is_err());
        assert!(construct_int("").is_err());
    }

    #[test]
    fn floats_and_timestamps() {
        assert_eq!(construct_float("1_0.5").unwrap(), 10.5);
        assert_eq!(construct_float("1:30.5").unwrap(), 90.5);
        assert_eq!(construct_float("-.INF").unwrap(), f64::NEG_INFINITY);
        assert!(construct_float("").is_err());
        let ts = construct_timestamp("2024-02-29T10:00:00.5+01:30").unwrap();
        assert_eq!(ts.time.unwrap().microsecond, 500_000);
        assert_eq!(ts.time.unwrap().offset_minutes, Some(90));
        assert!(construct_timestamp("2023-02-29").is_err());
        let utc = construct_timestamp("2024-02-29 08:30:00.5Z").unwrap();
        assert!(ts.python_eq(&utc));
    }

    #[test]
    fn binary_is_decoded_leniently() {
        assert_eq!(construct_binary("aGVs\n bG8=").unwrap(), b"hello");
        assert!(construct_binary("aGVsb").is_err());
    }
}
