//! Which wheel the image's interpreter would install: PEP 425 compatibility
//! tags in the order `packaging.tags.sys_tags()` gives them for CPython on
//! manylinux x86_64, and the choice of the best-ranked wheel among those a
//! resolver returns.
//!
//! uv's `pylock.toml` lists every wheel of a package that is compatible with
//! the target platform (several manylinux levels, abi3, a pure-Python
//! fallback), so one must be picked, exactly as pip or uv would when they
//! install into the image. Written here because the order is small and fixed
//! (packaging's `cpython_tags` + `compatible_tags` + `manylinux.platform_tags`),
//! and no Rust crate exposes it for a *target* interpreter rather than the
//! running one.

use std::collections::HashMap;

/// A wheel file name's parts (`{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    pub name: String,
    pub version: String,
    /// Every (python, abi, platform) triple the compressed tag set expands to.
    pub tags: Vec<(String, String, String)>,
}

impl WheelName {
    pub fn parse(filename: &str) -> Option<WheelName> {
        let stem = filename.strip_suffix(".whl")?;
        let parts: Vec<&str> = stem.split('-').collect();
        if parts.len() != 5 && parts.len() != 6 {
            return None;
        }
        let n = parts.len();
        let (python, abi, platform) = (parts[n - 3], parts[n - 2], parts[n - 1]);
        let mut tags = Vec::new();
        for p in python.split('.') {
            for a in abi.split('.') {
                for pl in platform.split('.') {
                    tags.push((p.to_string(), a.to_string(), pl.to_string()));
                }
            }
        }
        Some(WheelName { name: parts[0].to_string(), version: parts[1].to_string(), tags })
    }

    /// Pure Python: every tag is `none-any` (`py3-none-any`, `py2.py3-none-any`).
    pub fn is_pure(&self) -> bool {
        self.tags.iter().all(|(_, abi, platform)| abi == "none" && platform == "any")
    }

    /// The tag set as written in the file name (`cp311-cp311-manylinux_2_17_x86_64`).
    pub fn tag_text(filename: &str) -> &str {
        let stem = filename.strip_suffix(".whl").unwrap_or(filename);
        let mut dashes = stem.rmatch_indices('-').map(|(i, _)| i);
        let _ = (dashes.next(), dashes.next());
        dashes.next().map(|i| &stem[i + 1..]).unwrap_or(stem)
    }
}

/// The tags a CPython `major.minor` on x86_64 Linux with glibc `2.glibc_minor`
/// supports, best first, as `packaging.tags.sys_tags()` orders them.
#[derive(Debug, Clone)]
pub struct SupportedTags {
    rank: HashMap<(String, String, String), usize>,
    pub description: String,
}

impl SupportedTags {
    pub fn cpython_manylinux(python_version: &str, glibc: (u32, u32)) -> SupportedTags {
        let (major, minor) = python_version
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .unwrap_or((3, 11));
        let platforms = manylinux_platforms(glibc);
        let interpreter = format!("cp{major}{minor}");
        let mut ordered: Vec<(String, String, String)> = Vec::new();
        let mut push_all = |python: &str, abi: &str, platforms: &[String]| {
            for platform in platforms {
                ordered.push((python.to_string(), abi.to_string(), platform.clone()));
            }
        };
        // packaging.tags.cpython_tags
        push_all(&interpreter, &interpreter, &platforms);
        push_all(&interpreter, "abi3", &platforms);
        push_all(&interpreter, "none", &platforms);
        for older in (2..minor).rev() {
            push_all(&format!("cp{major}{older}"), "abi3", &platforms);
        }
        // packaging.tags.compatible_tags
        let py_versions = py_interpreter_range(major, minor);
        for version in &py_versions {
            push_all(version, "none", &platforms);
        }
        ordered.push((interpreter.clone(), "none".into(), "any".into()));
        for version in &py_versions {
            ordered.push((version.clone(), "none".into(), "any".into()));
        }
        let mut rank = HashMap::with_capacity(ordered.len());
        for (index, tag) in ordered.into_iter().enumerate() {
            rank.entry(tag).or_insert(index);
        }
        SupportedTags { rank, description: format!("{interpreter} / manylinux_{}_{} x86_64", glibc.0, glibc.1) }
    }

    /// The best (lowest) rank among a wheel's tags; `None` when none is supported.
    pub fn rank(&self, wheel: &WheelName) -> Option<usize> {
        wheel.tags.iter().filter_map(|tag| self.rank.get(tag).copied()).min()
    }

    /// Index of the wheel the target interpreter would install among
    /// `filenames` (best rank; equal ranks: the first file name in sorted
    /// order, so the choice never depends on the resolver's listing order).
    pub fn best<'a>(&self, filenames: impl IntoIterator<Item = &'a str>) -> Option<usize> {
        filenames
            .into_iter()
            .enumerate()
            .filter_map(|(index, filename)| {
                let rank = self.rank(&WheelName::parse(filename)?)?;
                Some((rank, filename, index))
            })
            .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
            .map(|(_, _, index)| index)
    }
}

/// `packaging.tags._py_interpreter_range`: py311, py3, py310, …, py30.
fn py_interpreter_range(major: u32, minor: u32) -> Vec<String> {
    let mut versions = vec![format!("py{major}{minor}"), format!("py{major}")];
    versions.extend((0..minor).rev().map(|m| format!("py{major}{m}")));
    versions
}

/// `packaging._manylinux.platform_tags` for x86_64: manylinux_2_Y down to
/// 2_5, each legacy alias right after its perennial tag, then `linux_x86_64`.
fn manylinux_platforms(glibc: (u32, u32)) -> Vec<String> {
    let mut platforms = Vec::new();
    if glibc.0 == 2 {
        for minor in (5..=glibc.1).rev() {
            platforms.push(format!("manylinux_2_{minor}_x86_64"));
            match minor {
                17 => platforms.push("manylinux2014_x86_64".into()),
                12 => platforms.push("manylinux2010_x86_64".into()),
                5 => platforms.push("manylinux1_x86_64".into()),
                _ => {}
            }
        }
    }
    platforms.push("linux_x86_64".into());
    platforms
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHARSET: [&str; 3] = [
        "charset_normalizer-3.5.3-py3-none-any.whl",
        "charset_normalizer-3.5.3-cp37-abi3-manylinux1_x86_64.manylinux_2_28_x86_64.manylinux_2_5_x86_64.whl",
        "charset_normalizer-3.5.3-cp311-cp311-manylinux1_x86_64.manylinux_2_28_x86_64.manylinux_2_5_x86_64.whl",
    ];

    #[test]
    fn the_interpreters_own_abi_beats_abi3_and_pure_python() {
        let tags = SupportedTags::cpython_manylinux("3.11", (2, 36));
        assert_eq!(tags.best(CHARSET), Some(2));
        // Python 3.12 has no cp312 wheel in the set: abi3 beats py3-none-any.
        let tags = SupportedTags::cpython_manylinux("3.12", (2, 36));
        assert_eq!(tags.best(CHARSET), Some(1));
    }

    #[test]
    fn a_newer_glibc_wheel_wins_only_when_the_base_has_that_glibc() {
        let wheels = [
            "numpy-2.3.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "numpy-2.3.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        ];
        assert_eq!(SupportedTags::cpython_manylinux("3.11", (2, 36)).best(wheels), Some(1));
        assert_eq!(SupportedTags::cpython_manylinux("3.11", (2, 27)).best(wheels), Some(0));
        // glibc older than every wheel: none fits.
        assert_eq!(SupportedTags::cpython_manylinux("3.11", (2, 12)).best(wheels), None);
    }

    #[test]
    fn wheels_for_other_interpreters_and_platforms_are_never_chosen() {
        let tags = SupportedTags::cpython_manylinux("3.11", (2, 36));
        let wheels = [
            "x-1-cp312-cp312-manylinux_2_17_x86_64.whl",
            "x-1-cp311-cp311-musllinux_1_2_x86_64.whl",
            "x-1-cp311-cp311-manylinux_2_17_aarch64.whl",
            "x-1-cp311-cp311-macosx_11_0_arm64.whl",
            "x-1-py2-none-any.whl",
        ];
        assert_eq!(tags.best(wheels), None);
        assert_eq!(tags.best(["x-1-py2.py3-none-any.whl"]), Some(0));
        // abi3 from an older CPython is fine; from a newer one it is not.
        assert_eq!(tags.best(["x-1-cp38-abi3-manylinux_2_17_x86_64.whl"]), Some(0));
        assert_eq!(tags.best(["x-1-cp312-abi3-manylinux_2_17_x86_64.whl"]), None);
    }

    #[test]
    fn order_follows_packaging_sys_tags() {
        // Ranks from pip's vendored packaging (`cpython_tags((3, 11), ["cp311"],
        // platforms)` + `compatible_tags((3, 11), "cp311", platforms)` with the
        // manylinux platforms of glibc 2.36): 914 tags in all.
        let tags = SupportedTags::cpython_manylinux("3.11", (2, 36));
        let rank = |name: &str| tags.rank(&WheelName::parse(&format!("x-1-{name}.whl")).unwrap()).unwrap();
        let expected = [
            ("cp311-cp311-manylinux_2_36_x86_64", 0),
            ("cp311-cp311-linux_x86_64", 35),
            ("cp311-abi3-manylinux_2_36_x86_64", 36),
            ("cp310-abi3-manylinux_2_5_x86_64", 141),
            ("py311-none-manylinux_2_36_x86_64", 432),
            ("py3-none-linux_x86_64", 503),
            ("cp311-none-any", 900),
            ("py311-none-any", 901),
            ("py3-none-any", 902),
            ("py310-none-any", 903),
            ("py30-none-any", 913),
        ];
        for (tag, index) in expected {
            assert_eq!(rank(tag), index, "{tag}");
        }
        assert!(rank("cp311-cp311-manylinux_2_17_x86_64") < rank("cp311-cp311-manylinux2014_x86_64"));
    }

    #[test]
    fn file_names_with_a_build_tag_parse() {
        let wheel = WheelName::parse("torch-2.5.1-1-cp311-cp311-manylinux1_x86_64.whl").unwrap();
        assert_eq!((wheel.name.as_str(), wheel.version.as_str()), ("torch", "2.5.1"));
        assert_eq!(wheel.tags, vec![("cp311".into(), "cp311".into(), "manylinux1_x86_64".into())]);
        assert!(WheelName::parse("einops-0.8.2-py3-none-any.whl").unwrap().is_pure());
        assert!(!WheelName::parse("x-1-cp311-cp311-linux_x86_64.whl").unwrap().is_pure());
        assert_eq!(WheelName::tag_text("x-1-cp311-cp311-linux_x86_64.whl"), "cp311-cp311-linux_x86_64");
        assert_eq!(WheelName::parse("not-a-wheel.tar.gz"), None);
    }
}
