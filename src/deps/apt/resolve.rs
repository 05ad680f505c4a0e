//! The dependency closure, as `apt-get install --no-install-recommends`
//! would pick it on the base: Pre-Depends and Depends followed (Recommends
//! and Suggests not), the first satisfiable alternative of `a | b` taken
//! unless another is already installed or selected, virtual packages through
//! Provides, packages installed in the base kept when their version
//! satisfies, Essential packages assumed present, the highest version of any
//! configured suite chosen. Conflicts/Breaks against the base or the
//! selection are errors (nothing is removed). Output sorted by name.

use super::control::{parse_paragraphs, parse_relations, Operator, Relation};
use super::index::{load_indexes, IndexPackage};
use super::sources::{parse_os_release, select_sources};
use super::{AptError, AptOptions, BaseSystem, LockedDeb};
use crate::spec::Requirement;
use debversion::Version;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Resolves `requested` against the base's archive; what the base already
/// has is not in the result.
pub fn resolve(base: &BaseSystem, requested: &[Requirement], options: &AptOptions) -> Result<Vec<LockedDeb>, AptError> {
    let distribution = parse_os_release(&base.os_release)?;
    let sources = select_sources(&distribution, base.apt_sources.as_deref(), options.mirror.as_deref())?;
    let searched = sources
        .iter()
        .map(|s| format!("{} {} ({})", s.uri, s.suite, s.components.join(" ")))
        .collect::<Vec<_>>()
        .join(", ");
    let packages = load_indexes(&sources, &base.arch, &base.keyrings, options.allow_unsigned, &options.cache_dir)?;
    let universe = Universe::new(packages, &base.arch, format!("{searched} for {}", base.arch))?;
    let installed = installed_packages(&base.dpkg_status)?;
    universe.resolve(&installed, requested)
}

/// A package installed in the base (`Status: install ok installed`).
#[derive(Debug, Clone)]
pub struct Installed {
    pub version: Version,
    pub provides: Vec<Relation>,
}

pub fn installed_packages(status: &str) -> Result<HashMap<String, Installed>, AptError> {
    let mut out = HashMap::new();
    for paragraph in parse_paragraphs(status).map_err(AptError::BadStatus)? {
        let words: Vec<&str> = paragraph.get("Status").unwrap_or("").split_whitespace().collect();
        if words.last() != Some(&"installed") {
            continue; // config-files, half-installed, not-installed: not usable
        }
        let (Some(name), Some(version)) = (paragraph.get("Package"), paragraph.get("Version")) else {
            continue;
        };
        let Ok(version) = version.parse::<Version>() else { continue };
        let provides = parse_relations(paragraph.get("Provides").unwrap_or("")).unwrap_or_default();
        out.insert(name.to_string(), Installed { version, provides: provides.into_iter().flatten().collect() });
    }
    Ok(out)
}

/// Every package of the configured suites for one architecture.
pub struct Universe {
    packages: Vec<IndexPackage>,
    versions: Vec<Version>,
    /// Name → indexes into `packages`, highest version first.
    by_name: HashMap<String, Vec<usize>>,
    /// Virtual name → (providing package, provided version).
    providers: HashMap<String, Vec<(usize, Option<Version>)>>,
    arch: String,
    /// For messages: which mirrors and suites were read.
    searched: String,
}

/// Why a package is in the selection: its requester, for error chains.
type Reasons = HashMap<String, String>;

impl Universe {
    pub fn new(all: Vec<IndexPackage>, arch: &str, searched: String) -> Result<Universe, AptError> {
        let mut packages = Vec::new();
        let mut versions = Vec::new();
        for package in all.into_iter().filter(|p| p.arch == arch || p.arch == "all") {
            let version = package.version.parse::<Version>().map_err(|e| AptError::BadIndex {
                what: format!("{} {}", package.uri, package.suite),
                message: format!("package `{}` has version `{}`: {e}", package.name, package.version),
            })?;
            packages.push(package);
            versions.push(version);
        }
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut providers: HashMap<String, Vec<(usize, Option<Version>)>> = HashMap::new();
        for (index, package) in packages.iter().enumerate() {
            by_name.entry(package.name.clone()).or_default().push(index);
            if !package.provides.is_empty() {
                let provided = parse_relations(&package.provides).map_err(|message| AptError::BadIndex {
                    what: format!("Provides of `{}`", package.name),
                    message,
                })?;
                for relation in provided.into_iter().flatten() {
                    let version = match relation.constraint {
                        Some((Operator::Equal, version)) => Some(version),
                        _ => None,
                    };
                    providers.entry(relation.name).or_default().push((index, version));
                }
            }
        }
        for list in by_name.values_mut() {
            // NotAutomatic suites (backports) last, as apt's pin 100 against 500; then the highest
            // version; ties (the same version in two suites) by suite for a stable pick.
            list.sort_by(|&a, &b| {
                (packages[a].not_automatic.cmp(&packages[b].not_automatic))
                    .then(versions[b].cmp(&versions[a]))
                    .then(packages[a].suite.cmp(&packages[b].suite))
            });
        }
        for list in providers.values_mut() {
            list.sort_by(|a, b| {
                priority_rank(&packages[a.0].priority)
                    .cmp(&priority_rank(&packages[b.0].priority))
                    .then(packages[a.0].name.cmp(&packages[b.0].name))
                    .then(versions[b.0].cmp(&versions[a.0]))
            });
        }
        Ok(Universe { packages, versions, by_name, providers, arch: arch.to_string(), searched })
    }

    /// The closure of `requested`, minus what `installed` already satisfies.
    pub fn resolve(
        &self,
        installed: &HashMap<String, Installed>,
        requested: &[Requirement],
    ) -> Result<Vec<LockedDeb>, AptError> {
        let mut selected: BTreeMap<String, usize> = BTreeMap::new();
        let mut reasons: Reasons = HashMap::new();
        let mut queue = VecDeque::new();
        for requirement in requested {
            let relation = requirement_relation(requirement)?;
            self.check_arch(&relation, &requirement.to_requirement_string())?;
            if !self.by_name.contains_key(&relation.name) && !self.providers.contains_key(&relation.name) {
                return Err(self.unknown(&relation.name));
            }
            let candidate = self.candidate(&relation, installed, &selected);
            // Like `apt-get install`, a requested package the base has in an older version
            // than the candidate is upgraded; dependencies are left alone when satisfied.
            let upgrade = candidate.is_some_and(|index| {
                installed.get(&self.packages[index].name).is_some_and(|base| self.versions[index] > base.version)
            });
            if !upgrade && self.satisfied(&relation, installed, &selected) {
                continue;
            }
            let Some(index) = candidate else {
                return Err(self.no_version(&relation));
            };
            if self.select(index, &mut selected) {
                reasons.insert(self.packages[index].name.clone(), "the requested packages".into());
                queue.push_back(index);
            }
        }
        while let Some(index) = queue.pop_front() {
            let package = &self.packages[index];
            for field in [&package.pre_depends, &package.depends] {
                let groups = parse_relations(field).map_err(|message| AptError::BadIndex {
                    what: format!("Depends of `{}` {}", package.name, package.version),
                    message,
                })?;
                for group in groups {
                    let group: Vec<Relation> = group.into_iter().filter(|r| r.applies_on(&self.arch)).collect();
                    if group.is_empty() || group.iter().any(|r| self.satisfied(r, installed, &selected)) {
                        continue;
                    }
                    if group.iter().any(|r| self.assumed_essential(r, installed)) {
                        continue;
                    }
                    let Some(chosen) = group.iter().find_map(|r| self.candidate(r, installed, &selected)) else {
                        return Err(self.unsatisfiable(package, &group, installed, &reasons));
                    };
                    if self.select(chosen, &mut selected) {
                        reasons.insert(self.packages[chosen].name.clone(), package.name.clone());
                        queue.push_back(chosen);
                    }
                }
            }
        }
        self.check_conflicts(installed, &selected)?;
        Ok(selected.values().map(|&index| self.locked(index)).collect())
    }

    /// Adds `index` unless its name is already selected; true when added.
    fn select(&self, index: usize, selected: &mut BTreeMap<String, usize>) -> bool {
        let name = &self.packages[index].name;
        if selected.contains_key(name) {
            return false;
        }
        selected.insert(name.clone(), index);
        true
    }

    fn check_arch(&self, relation: &Relation, what: &str) -> Result<(), AptError> {
        if self.arch_ok(relation) {
            return Ok(());
        }
        Err(AptError::BadRequirement {
            requirement: what.to_string(),
            message: format!("only the image's architecture ({}) is supported, not foreign architectures", self.arch),
        })
    }

    fn arch_ok(&self, relation: &Relation) -> bool {
        relation.arch_qualifier.as_deref().is_none_or(|q| q == "any" || q == "native" || q == self.arch)
    }

    /// Already satisfied by the selection or by the base (a selected newer
    /// version of an installed package replaces it).
    fn satisfied(
        &self,
        relation: &Relation,
        installed: &HashMap<String, Installed>,
        selected: &BTreeMap<String, usize>,
    ) -> bool {
        if !self.arch_ok(relation) {
            return false;
        }
        if let Some(&index) = selected.get(&relation.name) {
            if relation.version_matches(&self.versions[index]) {
                return true;
            }
        } else if let Some(package) = installed.get(&relation.name) {
            if relation.version_matches(&package.version) {
                return true;
            }
        }
        let provided_ok = |provided: Option<&Version>| match (&relation.constraint, provided) {
            (None, _) => true,
            (Some((op, wanted)), Some(version)) => op.holds(version, wanted),
            (Some(_), None) => false,
        };
        let by_selected = self.providers.get(&relation.name).is_some_and(|list| {
            list.iter().any(|(index, version)| {
                selected.get(&self.packages[*index].name) == Some(index) && provided_ok(version.as_ref())
            })
        });
        by_selected
            || installed.iter().any(|(name, package)| {
                !selected.contains_key(name)
                    && package.provides.iter().any(|p| {
                        p.name == relation.name
                            && provided_ok(p.constraint.as_ref().filter(|(op, _)| *op == Operator::Equal).map(|c| &c.1))
                    })
            })
    }

    /// A dependency on an Essential package the base does not list (a base
    /// without a dpkg database): taken as present, like apt assumes.
    fn assumed_essential(&self, relation: &Relation, installed: &HashMap<String, Installed>) -> bool {
        !installed.contains_key(&relation.name)
            && self.by_name.get(&relation.name).is_some_and(|list| list.iter().any(|&i| self.packages[i].essential))
    }

    /// The package to install for `relation`: the highest matching version of
    /// the real package, else a provider (installed/selected first, then by
    /// Priority and name).
    fn candidate(
        &self,
        relation: &Relation,
        installed: &HashMap<String, Installed>,
        selected: &BTreeMap<String, usize>,
    ) -> Option<usize> {
        if !self.arch_ok(relation) {
            return None;
        }
        if let Some(list) = self.by_name.get(&relation.name) {
            if let Some(&index) = list.iter().find(|&&i| relation.version_matches(&self.versions[i])) {
                // A different version of an already selected package cannot be added.
                if selected.get(&relation.name).is_none_or(|&s| s == index) {
                    return Some(index);
                }
            }
        }
        let list = self.providers.get(&relation.name)?;
        let matching = list.iter().filter(|(_, version)| match (&relation.constraint, version) {
            (None, _) => true,
            (Some((op, wanted)), Some(version)) => op.holds(version, wanted),
            (Some(_), None) => false,
        });
        let mut best: Option<usize> = None;
        for (index, _) in matching {
            let name = &self.packages[*index].name;
            if installed.contains_key(name) || selected.contains_key(name) {
                return Some(*index);
            }
            best.get_or_insert(*index);
        }
        best
    }

    fn check_conflicts(
        &self,
        installed: &HashMap<String, Installed>,
        selected: &BTreeMap<String, usize>,
    ) -> Result<(), AptError> {
        for &index in selected.values() {
            let package = &self.packages[index];
            for (relation_name, field) in [("conflicts with", &package.conflicts), ("breaks", &package.breaks)] {
                let groups = parse_relations(field).map_err(|message| AptError::BadIndex {
                    what: format!("Conflicts/Breaks of `{}`", package.name),
                    message,
                })?;
                for relation in groups.into_iter().flatten() {
                    if relation.name == package.name {
                        continue; // a package may conflict with other versions of itself
                    }
                    let (other_version, other_where) = match selected.get(&relation.name) {
                        Some(&other) => (&self.versions[other], "selected"),
                        None => match installed.get(&relation.name) {
                            Some(other) => (&other.version, "installed in the base"),
                            None => continue,
                        },
                    };
                    if relation.version_matches(other_version) {
                        return Err(AptError::Conflict {
                            package: format!("{} {}", package.name, package.version),
                            relation: relation_name.into(),
                            other: relation.name.clone(),
                            why: format!("{relation} matches {other_version}, {other_where}"),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn locked(&self, index: usize) -> LockedDeb {
        let package = &self.packages[index];
        LockedDeb {
            name: package.name.clone(),
            version: package.version.clone(),
            arch: package.arch.clone(),
            url: format!("{}/{}", package.uri, package.filename),
            sha256: package.sha256.clone(),
            size: package.size,
        }
    }

    fn unknown(&self, name: &str) -> AptError {
        let mut scored: Vec<(f64, &str)> = self
            .by_name
            .keys()
            .chain(self.providers.keys())
            .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate.as_str()))
            .filter(|(score, _)| *score >= 0.85)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        scored.dedup_by(|a, b| a.1 == b.1);
        AptError::UnknownPackage {
            name: name.to_string(),
            searched: self.searched.clone(),
            suggestions: scored.into_iter().take(3).map(|(_, n)| n.to_string()).collect(),
        }
    }

    fn no_version(&self, relation: &Relation) -> AptError {
        let available = self
            .by_name
            .get(&relation.name)
            .map(|list| {
                list.iter().map(|&i| format!("{} ({})", self.packages[i].version, self.packages[i].suite)).collect()
            })
            .unwrap_or_default();
        AptError::NoSuchVersion {
            name: relation.name.clone(),
            wanted: relation.constraint.as_ref().map(|(op, v)| format!("{} {v}", op.as_str())).unwrap_or_default(),
            searched: self.searched.clone(),
            available,
        }
    }

    fn unsatisfiable(
        &self,
        package: &IndexPackage,
        group: &[Relation],
        installed: &HashMap<String, Installed>,
        reasons: &Reasons,
    ) -> AptError {
        let dependency = group.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(" | ");
        let why = group
            .iter()
            .map(|r| {
                let known: Vec<String> = self
                    .by_name
                    .get(&r.name)
                    .map(|list| list.iter().map(|&i| self.packages[i].version.clone()).collect())
                    .unwrap_or_default();
                match (installed.get(&r.name), known.is_empty()) {
                    (Some(base), _) => format!(
                        "`{}` {} is in the base and the archive has [{}]",
                        r.name,
                        base.version,
                        known.join(", ")
                    ),
                    (None, true) if !self.providers.contains_key(&r.name) => {
                        format!("`{}` is not in the archive", r.name)
                    }
                    (None, _) => format!("the archive has `{}` [{}]", r.name, known.join(", ")),
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        let mut chain = vec![package.name.clone()];
        let mut current = package.name.clone();
        while let Some(parent) = reasons.get(&current) {
            chain.push(parent.clone());
            if chain.len() > 50 {
                break;
            }
            current = parent.clone();
        }
        AptError::Unsatisfiable {
            package: format!("{} {}", package.name, package.version),
            dependency,
            why,
            chain: chain[1..].join(" ← "),
        }
    }
}

/// Required < important < standard < optional < extra (unknown last).
fn priority_rank(priority: &str) -> u8 {
    match priority {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        "extra" => 4,
        _ => 5,
    }
}

/// A requirement from the config (`ffmpeg`, `curl=7.88.1-10`, `curl==…`,
/// `libfoo>=1.2`) as a relation. pip-style `<`/`>` are strict, as in pip.
fn requirement_relation(requirement: &Requirement) -> Result<Relation, AptError> {
    let bad = |message: String| AptError::BadRequirement { requirement: requirement.to_requirement_string(), message };
    let constraint = requirement.constraint.trim();
    let (name, arch_qualifier) = match requirement.name.trim().split_once(':') {
        Some((name, arch)) => (name.to_string(), Some(arch.to_string())),
        None => (requirement.name.trim().to_string(), None),
    };
    if constraint.is_empty() {
        return Ok(Relation { name, arch_qualifier, constraint: None, arch_restriction: Vec::new() });
    }
    let split = constraint.find(|c: char| !matches!(c, '<' | '>' | '=' | '!' | '~')).unwrap_or(constraint.len());
    let op = match &constraint[..split] {
        "=" | "==" => Operator::Equal,
        ">=" => Operator::LaterOrEqual,
        "<=" => Operator::EarlierOrEqual,
        ">>" | ">" => Operator::Later,
        "<<" | "<" => Operator::Earlier,
        other => {
            return Err(bad(format!(
                "version operator `{other}` is not supported for apt packages (use =, >=, <=, >>, <<)"
            )))
        }
    };
    let version =
        constraint[split..].trim().parse::<Version>().map_err(|e| bad(format!("not a Debian version: {e}")))?;
    Ok(Relation { name, arch_qualifier, constraint: Some((op, version)), arch_restriction: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny index: `app` needs libc6 (in the base), `libx | liby`, a
    /// virtual `mail-transport`, and libz (>= 2) where the base has libz 1.
    fn universe() -> Universe {
        let mut packages = Vec::new();
        let mut add = |name: &str, version: &str, fields: &[(&str, &str)]| {
            let mut package = IndexPackage {
                name: name.into(),
                version: version.into(),
                arch: "amd64".into(),
                filename: format!("pool/main/{name}_{version}_amd64.deb"),
                size: 1000,
                sha256: "ab".repeat(32),
                uri: "http://deb.example/debian".into(),
                suite: "stable".into(),
                priority: "optional".into(),
                ..IndexPackage::default()
            };
            for (field, value) in fields {
                match *field {
                    "Depends" => package.depends = value.to_string(),
                    "Pre-Depends" => package.pre_depends = value.to_string(),
                    "Provides" => package.provides = value.to_string(),
                    "Conflicts" => package.conflicts = value.to_string(),
                    "Essential" => package.essential = true,
                    "Architecture" => package.arch = value.to_string(),
                    "Priority" => package.priority = value.to_string(),
                    "NotAutomatic" => package.not_automatic = true,
                    _ => unreachable!(),
                }
            }
            packages.push(package);
        };
        add("app", "1.0-1", &[("Depends", "libc6 (>= 2.30), libx | liby, mail-transport, libz (>= 2), python3:any")]);
        add("app", "2.0-1", &[("Depends", "libc6 (>= 9.0)")]);
        add("libc6", "2.36-9", &[]);
        add("libx", "1", &[("Depends", "libx-data"), ("Architecture", "arm64")]);
        add("liby", "1", &[("Pre-Depends", "liby-data (= 1)")]);
        add("liby-data", "1", &[("Architecture", "all")]);
        add("liby-data", "2", &[("Architecture", "all")]);
        add("postfix", "3", &[("Provides", "mail-transport"), ("Priority", "optional")]);
        add("exim4", "4", &[("Provides", "mail-transport"), ("Priority", "standard")]);
        add("libz", "1", &[]);
        add("libz", "2", &[]);
        add("libz", "1:0.5", &[]);
        add("libz", "1:9", &[("NotAutomatic", "")]);
        add("python3", "3.11", &[]);
        add("dash", "0.5", &[("Essential", "yes")]);
        add("tool", "1", &[("Depends", "dash, nothere-at-all")]);
        add("mta-user", "1", &[("Depends", "mail-transport")]);
        add("old-conflict", "1", &[("Conflicts", "libc6 (<< 2.5)")]);
        Universe::new(packages, "amd64", "http://deb.example/debian stable (main) for amd64".into()).unwrap()
    }

    fn base(entries: &[(&str, &str, &str)]) -> HashMap<String, Installed> {
        let status: String = entries
            .iter()
            .map(|(name, version, provides)| {
                format!("Package: {name}\nStatus: install ok installed\nVersion: {version}\nProvides: {provides}\n\n")
            })
            .collect::<String>()
            + "Package: removed\nStatus: deinstall ok config-files\nVersion: 1\n";
        installed_packages(&status).unwrap()
    }

    fn req(text: &str) -> Requirement {
        let split = text.find(['=', '<', '>', '!']).unwrap_or(text.len());
        Requirement { name: text[..split].into(), constraint: text[split..].into() }
    }

    fn names(debs: &[LockedDeb]) -> Vec<String> {
        debs.iter().map(|d| format!("{}={}", d.name, d.version)).collect()
    }

    #[test]
    fn closure_follows_alternatives_provides_versions_and_skips_the_base() {
        let universe = universe();
        let installed = base(&[("libc6", "2.36-9", ""), ("libz", "1", ""), ("python3", "3.11", "")]);
        assert!(!installed.contains_key("removed"));
        let debs = universe.resolve(&installed, &[req("app=1.0-1")]).unwrap();
        // libx is arm64-only, so liby; liby-data pinned to 1 by `=`; libz upgraded
        // to the highest version satisfying >= 2 (epoch 1:0.5, not 1:9 of a NotAutomatic
        // suite such as backports); exim4 wins on Priority.
        assert_eq!(
            names(&debs),
            ["app=1.0-1", "exim4=4", "liby=1", "liby-data=1", "libz=1:0.5"],
            "sorted by name, nothing from the base"
        );
        assert_eq!(debs[0].url, "http://deb.example/debian/pool/main/app_1.0-1_amd64.deb");
    }

    #[test]
    fn installed_alternatives_and_providers_are_preferred() {
        let universe = universe();
        let installed = base(&[("libc6", "2.36-9", ""), ("postfix", "3", "mail-transport")]);
        let debs = universe.resolve(&installed, &[req("mta-user")]).unwrap();
        assert_eq!(names(&debs), ["mta-user=1"], "postfix in the base provides mail-transport");
        let installed = base(&[("libc6", "2.36-9", ""), ("liby", "1", "")]);
        let debs = universe.resolve(&installed, &[req("app=1.0-1")]).unwrap();
        assert!(!names(&debs).iter().any(|n| n.starts_with("liby")), "{debs:?}");
    }

    #[test]
    fn essential_packages_are_assumed_and_missing_dependencies_explained() {
        let universe = universe();
        let error = universe.resolve(&HashMap::new(), &[req("tool")]).unwrap_err().to_string();
        // dash (Essential) is not complained about; the missing one is, with its chain.
        assert!(error.contains("nothere-at-all") && error.contains("not in the archive"), "{error}");
        assert!(!error.contains("dash"), "{error}");
        assert!(error.contains("the requested packages"), "{error}");
        // app 2.0 needs libc6 >= 9.0, which nothing has.
        let installed = base(&[("libc6", "2.36-9", "")]);
        let error = universe.resolve(&installed, &[req("app")]).unwrap_err().to_string();
        assert!(error.contains("libc6 (>= 9.0)") && error.contains("2.36-9"), "{error}");
    }

    #[test]
    fn unknown_names_pins_and_conflicts_are_clear_errors() {
        let universe = universe();
        let installed = base(&[("libc6", "2.36-9", "")]);
        let error = universe.resolve(&installed, &[req("libzz")]).unwrap_err().to_string();
        assert!(error.contains("`libzz`") && error.contains("deb.example/debian stable"), "{error}");
        assert!(error.contains("did you mean `libz`"), "{error}");
        let error = universe.resolve(&installed, &[req("libz=3")]).unwrap_err().to_string();
        assert!(error.contains("= 3") && error.contains("1:0.5 (stable)"), "{error}");
        let error = universe.resolve(&installed, &[req("app!=1")]).unwrap_err().to_string();
        assert!(error.contains("`!=`"), "{error}");
        let error = universe.resolve(&base(&[("libc6", "2.1", "")]), &[req("old-conflict")]).unwrap_err().to_string();
        assert!(error.contains("conflicts with") && error.contains("libc6"), "{error}");
        assert_eq!(names(&universe.resolve(&installed, &[req("old-conflict")]).unwrap()), ["old-conflict=1"]);
        let error = universe.resolve(&installed, &[req("app:i386")]).unwrap_err().to_string();
        assert!(error.contains("architecture"), "{error}");
        // Requested and already in the base in the candidate version: nothing to do.
        assert!(universe.resolve(&installed, &[req("libc6")]).unwrap().is_empty());
        // Requested and in the base in an older version: upgraded, as apt-get install does.
        let old_base = base(&[("libc6", "2.36-9", ""), ("python3", "3.9", "")]);
        assert_eq!(names(&universe.resolve(&old_base, &[req("python3")]).unwrap()), ["python3=3.11"]);
        // A NotAutomatic (backports) version is taken when asked for, or when nothing else fits.
        assert_eq!(names(&universe.resolve(&installed, &[req("libz=1:9")]).unwrap()), ["libz=1:9"]);
        assert_eq!(names(&universe.resolve(&installed, &[req("libz>=1:5")]).unwrap()), ["libz=1:9"]);
    }
}
