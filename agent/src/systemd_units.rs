//! systemd unit files read offline the way `systemctl --root=DIR
//! is-enabled` (systemd 252, `unit_file_lookup_state` in install.c) reads
//! them, shared by the `service` check and the `service_disable` /
//! `service_mask` remediations. Differential tests compare it with
//! systemctl on generated trees (tests/systemd_oracle.rs).
//!
//! - **Finding the unit.** The first entry named after the unit in the
//!   search path ([`SEARCH_PATH`]), else (for an instance) after its
//!   template. An empty file or a device is a mask; a symlink whose target
//!   is `/dev/null` is a mask; a symlink into the search path is an alias,
//!   looked up again by its target's name; a symlink out of it is a linked
//!   unit file, followed. Drop-ins (`NAME.d/*.conf`, the template's too)
//!   add `[Install]` settings.
//! - **The word.** masked / masked-runtime (the mask is under `/run`);
//!   alias when the name was not the unit file's own; generated and
//!   transient by directory; then the links: a symlink named after the unit
//!   (or, for a template, an instance of it) in a `*.wants` or `*.requires`
//!   directory (252 knows no `*.upholds` there), or a symlink to the unit file under another
//!   name, counts when its name is one `[Install]` gives (the unit's own,
//!   an `Alias=`, the `DefaultInstance=` instance): in
//!   `/etc/systemd/system` that is enabled, under `/run` enabled-runtime,
//!   elsewhere (vendor directories) only an instance is static by it.
//!   Other such links make it indirect. A same-name link to a unit file
//!   outside the search path is linked (linked-runtime under `/run`).
//!   Without links: disabled when `[Install]` has `WantedBy=`,
//!   `RequiredBy=` or `Alias=` (252 ignores `UpheldBy=`), indirect with only `Also=`,
//!   static otherwise.
//!
//! Paths are in-root paths, resolved inside the root ([`RootFs`]).

use crate::rootfs::{ReadError, RootFs};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::Metadata;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

/// The system unit search path, highest precedence first, as
/// `lookup_paths_init` builds it on Debian (where `/lib/systemd/system` is
/// the package directory and `/usr/lib/systemd/system` is also read).
pub(crate) const SEARCH_PATH: [&str; 13] = [
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/run/systemd/generator.late",
];

/// Where `systemctl enable` and `mask` put their links.
pub(crate) const PERSISTENT_CONFIG: &str = "/etc/systemd/system";
const TRANSIENT: &str = "/run/systemd/transient";
const GENERATORS: [&str; 3] = [
    "/run/systemd/generator.early",
    "/run/systemd/generator",
    "/run/systemd/generator.late",
];

/// Unit type suffixes.
pub(crate) const UNIT_TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// Links followed from one name, at most (`UNIT_FILE_FOLLOW_SYMLINK_MAX`).
const FOLLOW_MAX: usize = 64;

/// What `systemctl is-enabled` prints (`UnitFileState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Word {
    Enabled,
    EnabledRuntime,
    Linked,
    LinkedRuntime,
    Alias,
    Masked,
    MaskedRuntime,
    Static,
    Disabled,
    Indirect,
    Generated,
    Transient,
}

impl Word {
    /// systemctl's spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Word::Enabled => "enabled",
            Word::EnabledRuntime => "enabled-runtime",
            Word::Linked => "linked",
            Word::LinkedRuntime => "linked-runtime",
            Word::Alias => "alias",
            Word::Masked => "masked",
            Word::MaskedRuntime => "masked-runtime",
            Word::Static => "static",
            Word::Disabled => "disabled",
            Word::Indirect => "indirect",
            Word::Generated => "generated",
            Word::Transient => "transient",
        }
    }
}

/// Why a unit's state cannot be given (systemctl fails on these too).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    /// No unit file, link or mask has the name (`ENOENT`).
    #[error("no unit file named {0}")]
    NotFound(String),
    /// An alias link names a unit that has no unit file (`ENOLINK`).
    #[error("{link} names {target}, which has no unit file")]
    Severed {
        /// the alias, as `path -> text`
        link: String,
        /// the unit it names
        target: String,
    },
    /// Not a unit name, an invalid alias, an alias loop, a directory where
    /// a unit file should be...
    #[error("{0}")]
    Invalid(String),
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// in-root path
        path: String,
        /// cause
        source: io::Error,
    },
}

impl LookupError {
    /// The name is not installed (systemctl: "No such file or directory"
    /// or "Link has been severed").
    pub(crate) fn is_not_installed(&self) -> bool {
        matches!(self, LookupError::NotFound(_) | LookupError::Severed { .. })
    }
}

/// `[Install]` settings, from the unit file and its drop-ins.
#[derive(Debug, Default, Clone)]
pub(crate) struct Install {
    pub aliases: Vec<String>,
    pub wanted_by: Vec<String>,
    pub required_by: Vec<String>,
    pub also: Vec<String>,
    pub default_instance: Option<String>,
    /// `Key=value (path:line)` of every setting read, for evidence.
    pub lines: Vec<String>,
}

impl Install {
    fn has_rules(&self) -> bool {
        !(self.aliases.is_empty() && self.wanted_by.is_empty() && self.required_by.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Regular,
    Masked,
    Alias,
    Linked,
}

/// A unit as found.
#[derive(Debug, Clone)]
pub(crate) struct Info {
    /// Its name (for an alias followed, the name it led to).
    pub name: String,
    /// The unit file, mask or link found for it (in-root).
    pub path: Option<String>,
    mode: Option<Mode>,
    /// Where the last link read points, simplified (in-root).
    symlink_target: Option<String>,
    pub install: Install,
    /// Links read on the way, `path -> text`.
    pub chain: Vec<String>,
}

impl Info {
    fn new(name: &str) -> Info {
        Info {
            name: name.to_string(),
            path: None,
            mode: None,
            symlink_target: None,
            install: Install::default(),
            chain: Vec::new(),
        }
    }
}

/// What `systemctl is-enabled NAME` says, and what decided it.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub word: Word,
    /// The unit found; for [`Word::Alias`], the unit the name leads to.
    pub info: Info,
    /// The links and lines that decided, for evidence.
    pub because: Vec<String>,
}

/// The kind of a unit name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameKind {
    Plain,
    Template,
    Instance,
}

fn valid_char(c: char, instance: bool) -> bool {
    c.is_ascii_alphanumeric() || ":-_.\\".contains(c) || (instance && c == '@')
}

/// `unit_name_is_valid`: `prefix[@[instance]].type`.
pub(crate) fn classify(name: &str) -> Option<NameKind> {
    if name.is_empty() || name.len() > 255 {
        return None;
    }
    let (stem, ty) = name.rsplit_once('.')?;
    if !UNIT_TYPES.contains(&ty) {
        return None;
    }
    match stem.split_once('@') {
        None => (!stem.is_empty() && stem.chars().all(|c| valid_char(c, false)))
            .then_some(NameKind::Plain),
        Some((prefix, instance)) => {
            if prefix.is_empty() || !prefix.chars().all(|c| valid_char(c, false)) {
                return None;
            }
            if instance.is_empty() {
                Some(NameKind::Template)
            } else {
                instance
                    .chars()
                    .all(|c| valid_char(c, true))
                    .then_some(NameKind::Instance)
            }
        }
    }
}

fn is_kind(name: &str, k: NameKind) -> bool {
    classify(name) == Some(k)
}

/// `unit_name_template`: `foo@bar.service` → `foo@.service` (a template
/// is its own template).
pub(crate) fn template_of(name: &str) -> Option<String> {
    match classify(name)? {
        NameKind::Plain => None,
        _ => {
            let (prefix, _) = name.split_once('@')?;
            let (_, ty) = name.rsplit_once('.')?;
            Some(format!("{prefix}@.{ty}"))
        }
    }
}

fn instance_of(name: &str) -> Option<&str> {
    let (_, rest) = name.split_once('@')?;
    let (inst, _) = rest.rsplit_once('.')?;
    Some(inst)
}

fn with_instance(template: &str, instance: &str) -> String {
    match (template.split_once('@'), template.rsplit_once('.')) {
        (Some((prefix, _)), Some((_, ty))) => format!("{prefix}@{instance}.{ty}"),
        _ => template.to_string(),
    }
}

fn unit_type(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(_, t)| t)
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((d, _)) => d,
        None => "",
    }
}

/// `path_startswith` on whole components.
fn under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn is_runtime_dir(dir: &str) -> bool {
    under(dir, "/run")
}

fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::EACCES))
}

fn io_err(path: &str) -> impl FnOnce(io::Error) -> LookupError + '_ {
    move |source| LookupError::Io {
        path: path.to_string(),
        source,
    }
}

/// Whether a link text, taken relative to the link's directory, names
/// `/dev/null` (`/dev/null`, `//dev/null`, `../../../dev/null`...).
pub(crate) fn names_dev_null(link_dir: &str, target: &str) -> bool {
    simplify(&join_link(link_dir, target)) == "/dev/null"
}

fn join_link(dir: &str, text: &str) -> String {
    if text.starts_with('/') {
        text.to_string()
    } else {
        format!("{dir}/{text}")
    }
}

/// `.` and `..` resolved lexically, slashes folded.
fn simplify(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A directory entry: in-root path, `lstat`, and the text of a symlink.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    meta: Metadata,
    link: Option<String>,
}

/// Listings of the directories of the search path, by in-root path.
/// One per [`UnitFiles`], or one shared by every lookup of a check run
/// ([`UnitFiles::shared`]): a baseline has dozens of service rules, and
/// each lists the same hundreds of entries.
#[derive(Debug, Default)]
pub(crate) struct UnitDirs(Mutex<HashMap<String, Arc<Vec<Entry>>>>);

impl UnitDirs {
    /// Forgets every listing (the unit files changed).
    pub(crate) fn forget(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// The listings a [`Fs`] keeps: its own, or a shared set.
enum Dirs<'a> {
    Own(UnitDirs),
    Shared(&'a UnitDirs),
}

/// Reading the root; each directory is listed once per [`UnitDirs`] (the
/// search path is scanned several times for one unit).
struct Fs<'a> {
    fs: &'a RootFs,
    dirs: Dirs<'a>,
}

impl<'a> Fs<'a> {
    fn new(fs: &'a RootFs) -> Fs<'a> {
        Fs {
            fs,
            dirs: Dirs::Own(UnitDirs::default()),
        }
    }

    fn dirs(&self) -> &UnitDirs {
        match &self.dirs {
            Dirs::Own(d) => d,
            Dirs::Shared(d) => d,
        }
    }

    /// The entry at `path`, from its directory's listing.
    fn entry(&self, path: &str) -> Result<Option<Entry>, LookupError> {
        let (dir, name) = match path.rsplit_once('/') {
            Some(("", n)) => ("/", n),
            Some((d, n)) => (d, n),
            None => return Ok(None),
        };
        let list = self.list(dir)?;
        Ok(list
            .binary_search_by(|e| file_name(&e.path).cmp(name))
            .ok()
            .and_then(|i| list.get(i).cloned()))
    }

    fn lstat(&self, path: &str) -> Result<Option<Metadata>, LookupError> {
        Ok(self.entry(path)?.map(|e| e.meta))
    }

    /// Entries of a directory, sorted by name; none when it does not
    /// exist. The directory's own path is resolved inside the root;
    /// entries are not followed.
    fn list(&self, dir: &str) -> Result<Arc<Vec<Entry>>, LookupError> {
        let cache = &self.dirs().0;
        if let Some(l) = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(dir)
        {
            return Ok(Arc::clone(l));
        }
        // Listed without the lock held: two rules may list the same
        // directory at once, and both get the same entries.
        let list = Arc::new(self.read_dir(dir)?);
        cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dir.to_string(), Arc::clone(&list));
        Ok(list)
    }

    fn read_dir(&self, dir: &str) -> Result<Vec<Entry>, LookupError> {
        let host = match self.fs.resolve(dir, true) {
            Ok(h) => h,
            Err(e) if gone(&e) => return Ok(Vec::new()),
            Err(e) => return Err(io_err(dir)(e)),
        };
        let entries = match std::fs::read_dir(&host) {
            Ok(r) => r,
            Err(e) if gone(&e) => return Ok(Vec::new()),
            Err(e) => return Err(io_err(dir)(e)),
        };
        let base = dir.trim_end_matches('/');
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(io_err(dir))?;
            let path = format!("{base}/{}", e.file_name().to_string_lossy());
            let meta = match e.metadata() {
                Ok(m) => m,
                Err(err) if gone(&err) => continue,
                Err(err) => return Err(io_err(&path)(err)),
            };
            let link = if meta.file_type().is_symlink() {
                match std::fs::read_link(e.path()) {
                    Ok(t) => Some(t.to_string_lossy().into_owned()),
                    Err(err) if gone(&err) => continue,
                    Err(err) => return Err(io_err(&path)(err)),
                }
            } else {
                None
            };
            out.push(Entry { path, meta, link });
        }
        out.sort_by(|a, b| file_name(&a.path).cmp(file_name(&b.path)));
        Ok(out)
    }

    fn read_link(&self, path: &str) -> Result<String, LookupError> {
        self.entry(path)?
            .and_then(|e| e.link)
            .ok_or_else(|| LookupError::Invalid(format!("{path} is not a symlink")))
    }

    /// `chase(CHASE_NOFOLLOW|CHASE_NONEXISTENT)`: symlinks on the way
    /// resolved inside the root, the last component kept.
    fn chase_parent(&self, path: &str) -> String {
        let simple = simplify(path);
        match self.fs.resolve(&simple, false) {
            Ok(host) => match host.strip_prefix(self.fs.root()) {
                Ok(rel) => format!("/{}", rel.display()),
                Err(_) => simple,
            },
            Err(_) => simple,
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, LookupError> {
        self.fs.read(path).map_err(|e| match e {
            ReadError::NotFound(p) => LookupError::NotFound(p),
            e => LookupError::Invalid(format!("cannot read {e}")),
        })
    }
}

/// Why loading one candidate path did not give a unit.
enum Miss {
    /// Nothing there (`ENOENT`, `ENOTDIR`, `EACCES`): try the next.
    Absent,
    Fatal(LookupError),
}

impl From<LookupError> for Miss {
    fn from(e: LookupError) -> Miss {
        Miss::Fatal(e)
    }
}

/// Reads `[Install]` settings from a unit file or drop-in (`config_parse`
/// with the `Install` section; other sections ignored).
fn parse_install(install: &mut Install, unit: &str, path: &str, bytes: &[u8]) {
    let mut section: Option<String> = None;
    let mut continuation: Option<(String, usize)> = None;
    let mut bom_seen = false;
    for (n, raw) in crate::sysctl_d::read_lines(bytes).into_iter().enumerate() {
        let line_no = n + 1;
        let mut l = String::from_utf8_lossy(raw).into_owned();
        let first = l.trim_start_matches([' ', '\t', '\n', '\r']);
        if first.starts_with(['#', ';']) {
            continue;
        }
        if !bom_seen && let Some(rest) = l.strip_prefix('\u{feff}') {
            l = rest.to_string();
            bom_seen = true;
        }
        let (mut text, start) = match continuation.take() {
            Some((mut c, start)) => {
                c.push_str(&l);
                (c, start)
            }
            None => (l, line_no),
        };
        // An odd number of trailing backslashes continues the line.
        let mut escaped = false;
        for c in text.chars() {
            escaped = !escaped && c == '\\';
        }
        if escaped {
            text.pop();
            text.push(' ');
            continuation = Some((text, start));
            continue;
        }
        let t = text.trim_matches([' ', '\t', '\n', '\r']);
        if t.is_empty() {
            continue;
        }
        if let Some(h) = t.strip_prefix('[') {
            section = h.strip_suffix(']').map(str::to_string);
            continue;
        }
        if section.as_deref() != Some("Install") {
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        let (k, v) = (
            k.trim_matches([' ', '\t', '\n', '\r']),
            v.trim_matches([' ', '\t', '\n', '\r']),
        );
        let at = format!("{path}:{start}");
        let words = || -> Vec<String> {
            v.split_whitespace()
                .map(|w| w.trim_matches(['"', '\'']).to_string())
                .filter(|w| !w.is_empty())
                .collect()
        };
        let list = match k {
            "Alias" => {
                if matches!(unit_type(unit), "device" | "slice" | "scope") {
                    continue;
                }
                &mut install.aliases
            }
            "WantedBy" => &mut install.wanted_by,
            "RequiredBy" => &mut install.required_by,
            "Also" => &mut install.also,
            "DefaultInstance" => {
                if is_kind(unit, NameKind::Template) {
                    install.default_instance = (!v.is_empty()).then(|| v.to_string());
                    install.lines.push(format!("DefaultInstance={v} ({at})"));
                }
                continue;
            }
            _ => continue,
        };
        if v.is_empty() {
            list.clear();
        } else {
            list.extend(words());
        }
        install.lines.push(format!("{k}={v} ({at})"));
    }
}

/// Unit-file lookups on one root, as install.c does them. Directory
/// listings are kept while the value lives (or while the shared
/// [`UnitDirs`] keeps them): make one per evaluation.
pub(crate) struct UnitFiles<'a> {
    fs: Fs<'a>,
}

impl<'a> UnitFiles<'a> {
    pub(crate) fn new(fs: &'a RootFs) -> UnitFiles<'a> {
        UnitFiles { fs: Fs::new(fs) }
    }

    /// Lookups that keep their listings in `dirs`, shared with others.
    pub(crate) fn shared(fs: &'a RootFs, dirs: &'a UnitDirs) -> UnitFiles<'a> {
        UnitFiles {
            fs: Fs {
                fs,
                dirs: Dirs::Shared(dirs),
            },
        }
    }

    /// `unit_file_load` for a main unit file: what is at `path`.
    fn load(&self, info: &mut Info, path: &str) -> Result<bool, Miss> {
        let Some(meta) = self.fs.lstat(path)? else {
            return Err(Miss::Absent);
        };
        let t = meta.file_type();
        if t.is_symlink() {
            return Ok(false);
        }
        use std::os::unix::fs::FileTypeExt;
        if (t.is_file() && meta.len() == 0) || t.is_char_device() || t.is_block_device() {
            info.mode = Some(Mode::Masked);
            return Ok(true);
        }
        if !t.is_file() {
            return Err(Miss::Fatal(LookupError::Invalid(format!(
                "{path} is a {}, not a unit file",
                crate::rootfs::kind_name(&meta)
            ))));
        }
        let bytes = self.fs.read(path)?;
        parse_install(&mut info.install, &info.name.clone(), path, &bytes);
        info.mode = Some(Mode::Regular);
        Ok(true)
    }

    /// `unit_file_load_or_readlink`.
    fn load_or_readlink(&self, info: &mut Info, path: &str) -> Result<(), Miss> {
        if self.load(info, path)? {
            return Ok(());
        }
        let text = self.fs.read_link(path)?;
        let target = self.fs.chase_parent(&join_link(parent(path), &text));
        info.chain.push(format!("{path} -> {text}"));
        let inside = SEARCH_PATH.iter().find(|d| under(&target, d));
        if inside.is_some() {
            validate_alias(path, &target)?;
        }
        info.mode = Some(if target == "/dev/null" {
            Mode::Masked
        } else if inside.is_some() {
            Mode::Alias
        } else {
            Mode::Linked
        });
        info.symlink_target = Some(target);
        Ok(())
    }

    /// `unit_file_search`: the unit file for `info.name` (or its path).
    fn search(&self, info: &mut Info) -> Result<(), LookupError> {
        if info.mode.is_some() {
            return Ok(());
        }
        if let Some(p) = info.path.clone() {
            return match self.load_or_readlink(info, &p) {
                Ok(()) => Ok(()),
                Err(Miss::Absent) => Err(LookupError::NotFound(info.name.clone())),
                Err(Miss::Fatal(e)) => Err(e),
            };
        }
        let template = is_kind(&info.name, NameKind::Instance)
            .then(|| template_of(&info.name))
            .flatten();
        let mut found = false;
        'names: for name in std::iter::once(info.name.clone()).chain(template.clone()) {
            for dir in SEARCH_PATH {
                let path = format!("{dir}/{name}");
                match self.load_or_readlink(info, &path) {
                    Ok(()) => {
                        info.path = Some(path);
                        found = true;
                        break 'names;
                    }
                    Err(Miss::Absent) => {}
                    Err(Miss::Fatal(e)) => return Err(e),
                }
            }
        }
        if !found {
            return Err(LookupError::NotFound(info.name.clone()));
        }
        if info.mode == Some(Mode::Masked) {
            return Ok(());
        }
        // Drop-ins: NAME.d/*.conf (and the template's) in every directory,
        // the first directory holding a file name taking it.
        let mut by_name: BTreeMap<String, String> = BTreeMap::new();
        for name in std::iter::once(info.name.clone()).chain(template) {
            for dir in SEARCH_PATH {
                for e in self.fs.list(&format!("{dir}/{name}.d"))?.iter() {
                    let f = file_name(&e.path);
                    if !f.starts_with('.') && f.ends_with(".conf") {
                        by_name.entry(f.to_string()).or_insert(e.path.clone());
                    }
                }
            }
        }
        for p in by_name.into_values() {
            let bytes = self.fs.read(&p)?;
            parse_install(&mut info.install, &info.name.clone(), &p, &bytes);
        }
        Ok(())
    }

    /// `install_info_follow`: on to the link's target path.
    fn follow(&self, info: &mut Info, ignore_different_name: bool) -> Result<bool, LookupError> {
        let Some(target) = info.symlink_target.clone() else {
            return Err(LookupError::Invalid(format!(
                "{}: no link to follow",
                info.name
            )));
        };
        if !ignore_different_name && file_name(&target) != info.name {
            return Ok(false);
        }
        info.path = Some(target);
        info.mode = None;
        info.symlink_target = None;
        self.search(info)?;
        Ok(true)
    }

    /// `install_info_traverse`: links followed until a unit file or mask.
    fn traverse(&self, name: &str) -> Result<Info, LookupError> {
        let mut info = Info::new(name);
        self.search(&mut info)?;
        let mut hops = 0;
        while matches!(info.mode, Some(Mode::Alias | Mode::Linked)) {
            hops += 1;
            if hops > FOLLOW_MAX {
                return Err(LookupError::Invalid(format!(
                    "{name}: too many levels of links ({})",
                    info.chain.join(", ")
                )));
            }
            let linked = info.mode == Some(Mode::Linked);
            if self.follow(&mut info, linked)? {
                continue;
            }
            // An alias to another name: look that name up afresh.
            let target = info.symlink_target.clone().unwrap_or_default();
            let mut bn = file_name(&target).to_string();
            if is_kind(&info.name, NameKind::Instance) && is_kind(&bn, NameKind::Template) {
                let inst = instance_of(&info.name).unwrap_or_default();
                let filled = with_instance(&bn, inst);
                if filled == info.name {
                    self.follow(&mut info, true)?;
                    continue;
                }
                bn = filled;
            }
            let mut next = Info::new(&bn);
            next.chain = std::mem::take(&mut info.chain);
            match self.search(&mut next) {
                Ok(()) => info = next,
                Err(LookupError::NotFound(_)) => {
                    return Err(LookupError::Severed {
                        link: next.chain.last().cloned().unwrap_or_default(),
                        target: bn,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(info)
    }

    /// `find_symlinks`: in one search directory, a link that counts for
    /// `info`, and whether a same-name link to it is there.
    fn find_symlinks(
        &self,
        info: &Info,
        match_name: bool,
        ignore_same_name: bool,
        dir: &str,
    ) -> Result<(Option<String>, Option<String>), LookupError> {
        let known = |entry: &str| {
            !match_name
                || entry == info.name
                || info.install.aliases.iter().any(|a| a == entry)
                || info.install.default_instance.as_deref().is_some_and(|di| {
                    is_kind(&info.name, NameKind::Template)
                        && entry == with_instance(&info.name, di)
                })
        };
        let entries = self.fs.list(dir)?;
        for sub in entries.iter() {
            // systemd 252's install.c knows no `*.upholds` (nor `UpheldBy=`).
            let suffix = file_name(&sub.path).rsplit_once('.').map(|(_, s)| s);
            if !sub.meta.is_dir() || !matches!(suffix, Some("wants" | "requires")) {
                continue;
            }
            for e in self.fs.list(&sub.path)?.iter() {
                let Some(text) = &e.link else {
                    continue;
                };
                let entry = file_name(&e.path);
                let found =
                    entry == info.name || template_of(entry).is_some_and(|t| t == info.name);
                if found && known(entry) {
                    return Ok((Some(format!("{} -> {text}", e.path)), None));
                }
            }
        }
        // Links to the unit file itself, under this or another name.
        let mut same_name = None;
        for e in entries.iter() {
            let Some(text) = &e.link else {
                continue;
            };
            let (p, entry) = (&e.path, file_name(&e.path));
            let dest = join_link(dir, text);
            let found_dest = file_name(&dest) == info.name;
            let found_path = !ignore_same_name && entry == info.name;
            if found_path && found_dest {
                same_name = Some(format!("{p} -> {text}"));
            } else if (found_path || found_dest) && known(entry) {
                return Ok((Some(format!("{p} -> {text}")), None));
            }
        }
        Ok((None, same_name))
    }

    /// `find_symlinks_in_scope`: the state the links give, if any, and
    /// the link that gives it.
    fn links_state(
        &self,
        info: &Info,
        match_name: bool,
    ) -> Result<Option<(Word, String)>, LookupError> {
        let mut runtime = None;
        let mut elsewhere = None;
        let mut same_config = None;
        let mut same_runtime = None;
        let mut ignore_same_name = false;
        let path = info.path.clone().unwrap_or_default();
        for dir in SEARCH_PATH {
            let (found, same) = self.find_symlinks(info, match_name, ignore_same_name, dir)?;
            if let Some(link) = found {
                if dir == PERSISTENT_CONFIG {
                    return Ok(Some((Word::Enabled, link)));
                }
                if is_runtime_dir(dir) {
                    runtime.get_or_insert(link);
                } else {
                    elsewhere.get_or_insert(link);
                }
            } else if let Some(link) = same {
                if dir == PERSISTENT_CONFIG {
                    same_config.get_or_insert(link);
                } else if is_runtime_dir(dir) {
                    same_runtime.get_or_insert(link);
                }
            }
            // Same-name entries below the unit file's own directory are
            // shadowed by it.
            if !ignore_same_name && under(&path, dir) {
                ignore_same_name = true;
            }
        }
        Ok(if let Some(l) = runtime {
            Some((Word::EnabledRuntime, l))
        } else if let Some(l) = elsewhere.filter(|_| is_kind(&info.name, NameKind::Instance)) {
            Some((Word::Static, l))
        } else if let Some(l) = same_config {
            Some((Word::Linked, l))
        } else {
            same_runtime.map(|l| (Word::LinkedRuntime, l))
        })
    }
}

/// `unit_validate_alias_symlink_or_warn` for a link into the search path.
fn validate_alias(link: &str, target: &str) -> Result<(), LookupError> {
    let (src, dst) = (file_name(link), file_name(target));
    let bad = |why: &str| Err(LookupError::Invalid(format!("{link}: {why}")));
    let Some(sk) = classify(src) else {
        return bad("not a valid unit name");
    };
    if matches!(unit_type(src), "device" | "slice" | "scope") {
        return bad("symlinks are not allowed for units of this type");
    }
    if src == dst {
        return bad(&format!("an alias of itself ({dst})"));
    }
    let Some(dk) = classify(dst) else {
        return bad(&format!("points to {dst}, which is not a valid unit name"));
    };
    if !(dk == sk || (sk == NameKind::Instance && dk == NameKind::Template)) {
        return bad(&format!("points to {dst}, a different kind of name"));
    }
    if dk == NameKind::Instance && instance_of(src) != instance_of(dst) {
        return bad(&format!("points to {dst}, another instance"));
    }
    if unit_type(src) != unit_type(dst) {
        return bad(&format!("points to {dst}, another unit type"));
    }
    Ok(())
}

impl UnitFiles<'_> {
    /// `unit_file_lookup_state`: what `systemctl --root=ROOT is-enabled
    /// NAME` prints, with the links and lines that decided it.
    pub(crate) fn state(&self, name: &str) -> Result<State, LookupError> {
        if classify(name).is_none() {
            return Err(LookupError::Invalid(format!(
                "\"{name}\" is not a unit name"
            )));
        }
        let info = self.traverse(name)?;
        let path = info.path.clone().unwrap_or_default();
        let mut because = Vec::new();
        let word = match info.mode {
            Some(Mode::Masked) => {
                because.push(match info.chain.is_empty() {
                    true => format!("{path} is an empty file"),
                    false => format!("by {}", info.chain.join(", ")),
                });
                if is_runtime_dir(&path) || is_runtime_dir(parent(&path)) {
                    Word::MaskedRuntime
                } else {
                    Word::Masked
                }
            }
            _ if name != file_name(&path) && !is_kind(&info.name, NameKind::Instance) => {
                because.push(format!(
                    "of {}, by {}",
                    file_name(&path),
                    info.chain.join(", ")
                ));
                Word::Alias
            }
            _ if GENERATORS.contains(&parent(&path)) => {
                because.push(format!("{path} is written by a generator"));
                Word::Generated
            }
            _ if parent(&path) == TRANSIENT => {
                because.push(format!("{path} is a transient unit"));
                Word::Transient
            }
            _ => {
                if let Some((w, link)) = self.links_state(&info, true)? {
                    because.push(format!("by {link}"));
                    w
                } else if let Some((_, link)) = self.links_state(&info, false)? {
                    because.push(format!("{link}, a name [Install] does not give"));
                    Word::Indirect
                } else if info.install.has_rules() {
                    because.push(format!(
                        "no link in place for {}",
                        info.install.lines.join(", ")
                    ));
                    Word::Disabled
                } else if !info.install.also.is_empty() {
                    because.push(format!("only {}", info.install.lines.join(", ")));
                    Word::Indirect
                } else {
                    because.push(format!("{path} has no [Install] rules"));
                    Word::Static
                }
            }
        };
        Ok(State {
            word,
            info,
            because,
        })
    }

    /// Symlinks in `*.wants`, `*.requires` and `*.upholds` directories of
    /// the search path that pull `unit` in at boot, whatever `is-enabled`
    /// says: named after the unit (for a template, after one of its
    /// instances that is not masked itself), not pointing at `/dev/null`.
    /// `path -> text`, each directory read once.
    pub(crate) fn boot_links(&self, unit: &str) -> Result<Vec<String>, LookupError> {
        let template = is_kind(unit, NameKind::Template);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for dir in SEARCH_PATH {
            if let Ok(host) = self.fs.fs.resolve(dir, true)
                && !seen.insert(host)
            {
                continue;
            }
            for sub in self.fs.list(dir)?.iter() {
                let suffix = file_name(&sub.path).rsplit_once('.').map(|(_, s)| s);
                if !sub.meta.is_dir() || !matches!(suffix, Some("wants" | "requires" | "upholds")) {
                    continue;
                }
                for e in self.fs.list(&sub.path)?.iter() {
                    let entry = file_name(&e.path);
                    let names = entry == unit
                        || (template
                            && is_kind(entry, NameKind::Instance)
                            && template_of(entry).is_some_and(|t| t == unit));
                    let Some(text) = e.link.as_deref().filter(|_| names) else {
                        continue;
                    };
                    if names_dev_null(&sub.path, text) {
                        continue;
                    }
                    if entry != unit
                        && self
                            .state(entry)
                            .is_ok_and(|s| matches!(s.word, Word::Masked | Word::MaskedRuntime))
                    {
                        continue;
                    }
                    out.push(format!("{} -> {text}", e.path));
                }
            }
        }
        Ok(out)
    }
}

/// Names that `[Install]` sections declare with `Alias=` (in unit files
/// and drop-ins anywhere in the search path): alias → (unit, `path:line`).
/// The first declaration in search order wins.
#[derive(Debug, Default)]
pub(crate) struct DeclaredAliases(BTreeMap<String, (String, String)>);

impl DeclaredAliases {
    /// Reads every unit file and drop-in of the search path once.
    pub(crate) fn read(fs: &RootFs) -> Result<DeclaredAliases, LookupError> {
        let f = Fs::new(fs);
        let mut map = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut declare = |unit: &str, path: &str, bytes: &[u8]| {
            let mut i = Install::default();
            parse_install(&mut i, unit, path, bytes);
            for a in i.aliases {
                let at = i
                    .lines
                    .iter()
                    .rev()
                    .find(|l| l.starts_with("Alias=") && l.contains(a.as_str()))
                    .cloned()
                    .unwrap_or_default();
                map.entry(a).or_insert_with(|| (unit.to_string(), at));
            }
        };
        for dir in SEARCH_PATH {
            if let Ok(host) = fs.resolve(dir, true)
                && !seen.insert(host)
            {
                continue;
            }
            for e in f.list(dir)?.iter() {
                let (p, meta, name) = (&e.path, &e.meta, file_name(&e.path));
                // Unit files, and unit files linked in from outside the
                // search path (not aliases: those are links into it).
                let unit_file = classify(name).is_some()
                    && if let Some(text) = &e.link {
                        let target = f.chase_parent(&join_link(dir, text));
                        target != "/dev/null" && !SEARCH_PATH.iter().any(|d| under(&target, d))
                    } else {
                        meta.is_file() && meta.len() > 0
                    };
                if unit_file {
                    if let Ok(bytes) = fs.read(p) {
                        declare(name, p, &bytes);
                    }
                } else if let Some(unit) = name.strip_suffix(".d")
                    && meta.is_dir()
                    && classify(unit).is_some()
                {
                    for c in f.list(p)?.iter() {
                        let (m, cn) = (&c.meta, file_name(&c.path));
                        if m.is_file()
                            && cn.ends_with(".conf")
                            && !cn.starts_with('.')
                            && let Ok(bytes) = fs.read(&c.path)
                        {
                            declare(unit, &c.path, &bytes);
                        }
                    }
                }
            }
        }
        Ok(DeclaredAliases(map))
    }

    /// The unit declaring `alias`, and the `Alias=` line.
    pub(crate) fn get(&self, alias: &str) -> Option<&(String, String)> {
        self.0.get(alias)
    }
}

/// Why a rule's unit cannot be judged or acted on; the text is the check's
/// evidence or the remediation's refusal.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UnitError {
    /// The rule's name cannot name a unit.
    #[error("\"{0}\" is not a unit name")]
    NotAUnitName(String),
    /// The `Alias=` declarations of the root cannot be read (shared by
    /// every rule of the run, hence the `Arc`).
    #[error("{0}")]
    Aliases(Arc<LookupError>),
    /// The state of a unit on the alias chain cannot be given.
    #[error("systemctl is-enabled {name} fails: {source}")]
    IsEnabled {
        /// the unit asked about
        name: String,
        /// why
        source: LookupError,
    },
    /// The aliases do not end.
    #[error("{unit}: more than {max} aliases in a row", max = MAX_HOPS)]
    AliasChain {
        /// the rule's unit
        unit: String,
    },
    /// Another lookup (the boot links of the unit) fails.
    #[error(transparent)]
    Lookup(#[from] LookupError),
}

/// The full unit name (`ssh` → `ssh.service`), or why it is not one.
pub(crate) fn unit_name(unit: &str) -> Result<String, UnitError> {
    if unit.is_empty()
        || unit.starts_with('.')
        || unit.contains(['/', '\0'])
        || unit.contains(char::is_whitespace)
    {
        return Err(UnitError::NotAUnitName(unit.to_owned()));
    }
    let typed = unit
        .rsplit_once('.')
        .is_some_and(|(_, t)| UNIT_TYPES.contains(&t));
    Ok(if typed {
        unit.to_string()
    } else {
        format!("{unit}.service")
    })
}

/// Alias hops followed from the name a rule gives.
const MAX_HOPS: usize = 8;

/// The unit a rule's name stands for, after aliases (links, and `Alias=`
/// declarations from `aliases` for a name nothing else installs): its name
/// and state, or `None` when nothing installs it. Evidence lines (one per
/// name, starting `systemctl is-enabled NAME: WORD`) are added on the way.
pub(crate) fn resolve<'a>(
    units: &UnitFiles,
    aliases: impl Fn() -> Result<&'a DeclaredAliases, Arc<LookupError>>,
    unit: &str,
    ev: &mut Vec<String>,
) -> Result<Option<(String, State)>, UnitError> {
    let mut name = unit.to_string();
    for hop in 0..MAX_HOPS {
        match units.state(&name) {
            Ok(s) if s.word == Word::Alias => {
                ev.push(format!(
                    "systemctl is-enabled {name}: alias {}",
                    s.because.join(", ")
                ));
                // The unit file's own name: a link out of the search path
                // keeps the name it was asked by.
                name = file_name(s.info.path.as_deref().unwrap_or_default()).to_string();
            }
            Ok(s) => return Ok(Some((name, s))),
            Err(e) if e.is_not_installed() => {
                let word = match e {
                    LookupError::NotFound(_) => "not-found",
                    _ => "failed",
                };
                if hop == 0
                    && let Some((owner, at)) = aliases().map_err(UnitError::Aliases)?.get(&name)
                {
                    ev.push(format!(
                        "systemctl is-enabled {name}: {word}, {at} makes it a name of {owner}"
                    ));
                    name = owner.clone();
                    continue;
                }
                ev.push(format!(
                    "systemctl is-enabled {name}: {word}, {name} is not installed ({e})"
                ));
                return Ok(None);
            }
            Err(source) => return Err(UnitError::IsEnabled { name, source }),
        }
    }
    Err(UnitError::AliasChain {
        unit: unit.to_owned(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// Writes `content` at in-root path `p`, making its parents.
    pub(crate) fn write(root: &Path, p: &str, content: &str) {
        let p = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// Makes in-root path `p` a symlink to `target`, making its parents.
    pub(crate) fn link(root: &Path, target: &str, p: &str) {
        let p = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    fn word(root: &Path, name: &str) -> String {
        match UnitFiles::new(&RootFs::new(root)).state(name) {
            Ok(s) => s.word.as_str().to_string(),
            Err(e) if e.is_not_installed() => "not-found".into(),
            Err(e) => format!("error: {e}"),
        }
    }

    const WANTED: &str = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n";

    #[test]
    fn names() {
        assert_eq!(classify("ssh.service"), Some(NameKind::Plain));
        assert_eq!(classify("getty@.service"), Some(NameKind::Template));
        assert_eq!(classify("getty@tty1.service"), Some(NameKind::Instance));
        assert_eq!(classify("ssh"), None);
        assert_eq!(classify("@x.service"), None);
        assert_eq!(classify("a b.service"), None);
        assert_eq!(
            template_of("getty@tty1.service").as_deref(),
            Some("getty@.service")
        );
        assert!(names_dev_null("/etc/systemd/system", "../../../dev/null"));
        assert!(!names_dev_null("/etc/systemd/system", "/dev/null/x"));
    }

    #[test]
    fn the_words() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/lib/systemd/system/a.service", WANTED);
        write(
            r,
            "/lib/systemd/system/s.service",
            "[Service]\nExecStart=/bin/true\n",
        );
        write(
            r,
            "/lib/systemd/system/also.service",
            "[Install]\nAlso=a.service\n",
        );
        assert_eq!(word(r, "a.service"), "disabled");
        assert_eq!(word(r, "s.service"), "static");
        assert_eq!(word(r, "also.service"), "indirect");
        assert_eq!(word(r, "nope.service"), "not-found");
        link(
            r,
            "/lib/systemd/system/a.service",
            "/etc/systemd/system/multi-user.target.wants/a.service",
        );
        assert_eq!(word(r, "a.service"), "enabled");
        link(r, "/dev/null", "/etc/systemd/system/s.service");
        assert_eq!(word(r, "s.service"), "masked");
        write(r, "/run/systemd/generator/g.service", WANTED);
        assert_eq!(word(r, "g.service"), "generated");
        // A vendor wants link: systemctl still says disabled.
        write(r, "/lib/systemd/system/v.service", WANTED);
        link(
            r,
            "../v.service",
            "/lib/systemd/system/multi-user.target.wants/v.service",
        );
        assert_eq!(word(r, "v.service"), "disabled");
        let fs = RootFs::new(r);
        assert_eq!(
            UnitFiles::new(&fs).boot_links("v.service").unwrap().len(),
            1
        );
    }

    #[test]
    fn aliases_and_links() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            r,
            "/lib/systemd/system/ssh.service",
            "[Install]\nAlias=sshd.service\n",
        );
        assert_eq!(word(r, "sshd.service"), "not-found");
        let aliases = DeclaredAliases::read(&RootFs::new(r)).unwrap();
        assert_eq!(aliases.get("sshd.service").unwrap().0, "ssh.service");
        // Enabled through its Alias= link alone.
        link(
            r,
            "/lib/systemd/system/ssh.service",
            "/etc/systemd/system/sshd.service",
        );
        assert_eq!(word(r, "ssh.service"), "enabled");
        assert_eq!(word(r, "sshd.service"), "alias");
        // A unit file linked in from outside the search path.
        write(r, "/opt/x.service", WANTED);
        link(r, "/opt/x.service", "/etc/systemd/system/x.service");
        assert_eq!(word(r, "x.service"), "linked");
        // A mask reached through a chain of links.
        link(r, "/dev/null", "/opt/masks/m.service");
        link(r, "/opt/masks/m.service", "/etc/systemd/system/m.service");
        let fs = RootFs::new(r);
        let s = UnitFiles::new(&fs).state("m.service").unwrap();
        assert_eq!(s.word, Word::Masked);
        assert_eq!(
            s.because,
            vec![
                "by /etc/systemd/system/m.service -> /opt/masks/m.service, /opt/masks/m.service -> /dev/null"
            ]
        );
    }

    #[test]
    fn templates() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            r,
            "/lib/systemd/system/getty@.service",
            "[Install]\nWantedBy=getty.target\n",
        );
        link(
            r,
            "/lib/systemd/system/getty@.service",
            "/etc/systemd/system/getty.target.wants/getty@tty1.service",
        );
        assert_eq!(word(r, "getty@tty1.service"), "enabled");
        assert_eq!(word(r, "getty@tty2.service"), "disabled");
        assert_eq!(word(r, "getty@.service"), "indirect");
        link(r, "/dev/null", "/etc/systemd/system/getty@.service");
        assert_eq!(word(r, "getty@.service"), "masked");
        assert_eq!(word(r, "getty@tty1.service"), "masked");
    }
}
