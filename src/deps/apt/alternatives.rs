//! The one maintainer-script action done natively: `update-alternatives
//! --install` lines in `postinst` (e.g. libblas3 → `libblas.so.3`, without
//! which ffmpeg does not start). Only literal commands are read (no shell
//! variables); for each alternative the highest priority wins, as in
//! update-alternatives' auto mode, and the same links and admin file are
//! written (`/etc/alternatives/NAME`, the link, `/var/lib/dpkg/alternatives/NAME`).
//! Parsing shell is hand-written because no crate does "find this one
//! command in a debhelper script"; anything else in a script is left alone
//! and warned about by the caller.

use std::collections::BTreeMap;

/// One `--install` (master or slave): link in the image, name, path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub link: String,
    pub name: String,
    pub path: String,
}

/// One `update-alternatives --install` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub master: Link,
    pub priority: i64,
    pub slaves: Vec<Link>,
}

/// Finds literal `update-alternatives --install` commands in a script and
/// returns them with the script's other lines (comments, blank lines,
/// `set -e` and `exit 0` dropped), so the caller can tell whether anything
/// else was left undone.
pub fn parse_script(script: &str) -> (Vec<Install>, Vec<String>) {
    let joined = script.replace("\\\n", " ");
    let mut installs = Vec::new();
    let mut rest = Vec::new();
    for line in joined.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || matches!(line, "set -e" | "set -eu" | "exit 0") {
            continue;
        }
        match parse_install(line) {
            Some(install) => installs.push(install),
            None => rest.push(line.to_string()),
        }
    }
    (installs, rest)
}

fn parse_install(line: &str) -> Option<Install> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.first() != Some(&"update-alternatives") || line.contains('$') || line.contains(['`', ';', '|', '&']) {
        return None;
    }
    let mut iter = words[1..].iter().copied().filter(|w| !w.starts_with("--quiet"));
    if iter.next()? != "--install" {
        return None;
    }
    let master = Link { link: iter.next()?.into(), name: iter.next()?.into(), path: iter.next()?.into() };
    let priority = iter.next()?.parse().ok()?;
    let mut slaves = Vec::new();
    while let Some(flag) = iter.next() {
        if flag != "--slave" {
            return None;
        }
        slaves.push(Link { link: iter.next()?.into(), name: iter.next()?.into(), path: iter.next()?.into() });
    }
    let absolute = |link: &Link| link.link.starts_with('/') && link.path.starts_with('/') && !link.name.contains('/');
    (absolute(&master) && slaves.iter().all(absolute)).then_some(Install { master, priority, slaves })
}

/// For each alternative name, the install with the highest priority (the
/// first one listed wins a tie).
pub fn choose(installs: Vec<Install>) -> BTreeMap<String, (Install, Vec<Install>)> {
    let mut by_name: BTreeMap<String, (Install, Vec<Install>)> = BTreeMap::new();
    for install in installs {
        match by_name.get_mut(&install.master.name) {
            Some((best, all)) => {
                if install.priority > best.priority {
                    *best = install.clone();
                }
                all.push(install);
            }
            None => {
                by_name.insert(install.master.name.clone(), (install.clone(), vec![install]));
            }
        }
    }
    by_name
}

/// The `/var/lib/dpkg/alternatives/NAME` file update-alternatives writes:
/// mode, master link, slave (name, link) pairs, blank, then per choice its
/// path, priority and slave paths, then a blank line.
pub fn admin_file(best: &Install, all: &[Install]) -> String {
    let mut out = format!("auto\n{}\n", best.master.link);
    let mut slave_names: Vec<(&str, &str)> =
        all.iter().flat_map(|i| i.slaves.iter().map(|s| (s.name.as_str(), s.link.as_str()))).collect();
    slave_names.sort();
    slave_names.dedup_by(|a, b| a.0 == b.0);
    for (name, link) in &slave_names {
        out.push_str(&format!("{name}\n{link}\n"));
    }
    out.push('\n');
    for install in all {
        out.push_str(&format!("{}\n{}\n", install.master.path, install.priority));
        for (name, _) in &slave_names {
            let path = install.slaves.iter().find(|s| s.name == *name).map(|s| s.path.as_str()).unwrap_or("");
            out.push_str(&format!("{path}\n"));
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debhelper_lines_with_continuations_and_slaves_parse_and_the_highest_priority_wins() {
        let libblas =
            "#!/bin/sh\n\nset -e\n\nupdate-alternatives --install /usr/lib/x86_64-linux-gnu/libblas.so.3 \\\n\
            \t\tlibblas.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/blas/libblas.so.3 10\n\n\nexit 0\n";
        let (installs, rest) = parse_script(libblas);
        assert!(rest.is_empty(), "{rest:?}");
        assert_eq!(installs[0].master.name, "libblas.so.3-x86_64-linux-gnu");
        assert_eq!(installs[0].priority, 10);
        let openblas = "update-alternatives --install /usr/lib/x86_64-linux-gnu/libblas.so.3 libblas.so.3-x86_64-linux-gnu \
            /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 100 --slave /usr/share/man/man1/x.1.gz x.1.gz /y.1.gz\n\
            fc-cache -s\nupdate-alternatives --install /usr/bin/x x \"$DIR/x\" 5\n";
        let (more, rest) = parse_script(openblas);
        assert_eq!(rest, ["fc-cache -s", "update-alternatives --install /usr/bin/x x \"$DIR/x\" 5"]);
        let chosen = choose(installs.into_iter().chain(more).collect());
        let (best, all) = &chosen["libblas.so.3-x86_64-linux-gnu"];
        assert_eq!(best.priority, 100);
        assert_eq!(
            admin_file(best, all),
            "auto\n/usr/lib/x86_64-linux-gnu/libblas.so.3\nx.1.gz\n/usr/share/man/man1/x.1.gz\n\n\
             /usr/lib/x86_64-linux-gnu/blas/libblas.so.3\n10\n\n\
             /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3\n100\n/y.1.gz\n\n"
        );
    }
}
