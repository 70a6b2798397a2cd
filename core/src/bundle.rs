//! Signed baseline bundles and the Ed25519 keys that sign them.
//!
//! A baseline can turn on remediation, so it is as powerful as root on every
//! host. Only a key in an agent's trusted list may produce one: the collector
//! stores and serves bundles but cannot forge or alter them. The formats are
//! documented in `docs/signing.md`; this module is the one implementation the
//! `plumb` commands, the collector and the agent's trust policy all call.
//!
//! Bundle layout (one canonical encoding; `to_bytes(parse(b)) == b`):
//!
//! ```text
//! plumb-baseline-bundle 1
//! id: issp-linux-server
//! version: 7
//! key-id: 3f9a0c1d2e4b5a69
//! signature: <base64, 64-byte Ed25519 signature>
//! length: 1234
//!
//! <exactly `length` bytes: the baseline TOML as the security team wrote it>
//! ```

use crate::baseline::{Baseline, BaselineError, MAX_BASELINE_BYTES};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use plumb_os::{FileKind, Problem, TrustError};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use std::fmt;
use std::io::Read as _;
use std::path::Path;

/// First line of every bundle, format version included.
pub const BUNDLE_MAGIC: &str = "plumb-baseline-bundle 1";
/// Bundle format version, bound into every signature.
pub const BUNDLE_FORMAT: u32 = 1;
/// Domain separation: a signature made for anything else can never verify as
/// a bundle signature, and a bundle signature is useless anywhere else.
pub const SIGNATURE_CONTEXT: &str = "plumbline baseline bundle signature v1";
/// Largest bundle accepted: the largest baseline plus room for the header.
pub const MAX_BUNDLE_BYTES: u64 = MAX_BASELINE_BYTES + 4096;
/// Largest key file accepted (public or private); real ones are < 300 bytes.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
/// Public key file line prefix (the key type).
pub const PUBLIC_KEY_TYPE: &str = "plumb-ed25519";

const MAX_HEADER_LINE: usize = 512;
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";
/// Header fields, in the only order accepted.
const FIELDS: [&str; 5] = ["id", "version", "key-id", "signature", "length"];

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("{path}: cannot read key: {source}")]
    Read {
        /// file
        path: String,
        /// cause
        source: std::io::Error,
    },
    /// The file is far larger than any key.
    #[error("{path}: {size} bytes is too large for a key file (limit {MAX_KEY_FILE_BYTES})")]
    TooLarge {
        /// file
        path: String,
        /// its size
        size: u64,
    },
    /// The file failed the trust rule: a symlink, another owner, writable
    /// by group or others, or (a private key, as ssh does) any group or
    /// other access.
    #[error(transparent)]
    Untrusted(plumb_os::TrustError),
    /// The private key file is not the expected PEM / PKCS#8 Ed25519 key.
    #[error("{origin}: not a usable Ed25519 private key: {reason}")]
    PrivateKey {
        /// file
        origin: String,
        /// what is wrong
        reason: String,
    },
    /// The public key file is malformed.
    #[error("{origin}{}: not a Plumbline public key: {reason}", line_suffix(*.line))]
    PublicKey {
        /// file
        origin: String,
        /// 1-based line (0 when the file as a whole is at fault)
        line: usize,
        /// what is wrong
        reason: String,
    },
    /// The key id written in the file is not the id of the key in it.
    #[error("{origin}: key id {stated} does not match the key, whose id is {computed}")]
    KeyIdMismatch {
        /// file
        origin: String,
        /// id written in the file
        stated: String,
        /// id computed from the key
        computed: String,
    },
    /// The system random generator failed.
    #[error("cannot generate a key: the system random generator failed")]
    Random,
}

fn line_suffix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

/// Why a bundle was refused. Each message says what is wrong in words an
/// operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle file could not be read.
    #[error("{path}: cannot read bundle: {source}")]
    Read {
        /// file
        path: String,
        /// cause
        source: std::io::Error,
    },
    /// The bundle file failed the trust rule (a symlink, another owner,
    /// writable by group or others).
    #[error(transparent)]
    Untrusted(plumb_os::TrustError),
    /// Larger than [`MAX_BUNDLE_BYTES`] (or a baseline larger than its limit).
    #[error("{what} is {size} bytes, larger than the {limit}-byte limit")]
    TooLarge {
        /// "bundle" or "baseline"
        what: &'static str,
        /// its size (at least; reading stops past the limit)
        size: u64,
        /// the limit
        limit: u64,
    },
    /// The input does not start with [`BUNDLE_MAGIC`].
    #[error("not a baseline bundle: expected first line {BUNDLE_MAGIC:?}, found {found:?}")]
    BadMagic {
        /// the start of what was found
        found: String,
    },
    /// A bundle of a format version this build does not read.
    #[error("unsupported bundle format {found:?}: this build reads {BUNDLE_MAGIC:?}")]
    UnsupportedFormat {
        /// the first line found
        found: String,
    },
    /// The input ends inside the header.
    #[error("bundle is truncated: it ends before {what}")]
    Truncated {
        /// what was still expected
        what: String,
    },
    /// A header line is malformed.
    #[error("bundle header line {line}: {reason}")]
    BadHeader {
        /// 1-based line
        line: usize,
        /// what is wrong
        reason: String,
    },
    /// Fewer payload bytes than the header declares.
    #[error("bundle is truncated: header declares {declared} baseline bytes, only {actual} follow")]
    PayloadTruncated {
        /// declared length
        declared: u64,
        /// bytes present
        actual: u64,
    },
    /// Bytes after the declared payload.
    #[error("bundle has {extra} bytes of trailing data after the {declared}-byte baseline")]
    TrailingData {
        /// declared length
        declared: u64,
        /// bytes beyond it
        extra: u64,
    },
    /// Verification was asked with no trusted key at all.
    #[error("no trusted keys are configured: no bundle can be accepted")]
    NoTrustedKeys,
    /// The signing key is not one of the trusted keys.
    #[error("signed by unknown key {key_id} (trusted: {})", .trusted.join(", "))]
    UnknownKey {
        /// key id named in the bundle
        key_id: String,
        /// ids of the trusted keys
        trusted: Vec<String>,
    },
    /// The signature does not verify: the bundle was altered or forged.
    #[error("bad signature: bundle was altered or not signed by key {key_id}")]
    BadSignature {
        /// key id named in the bundle
        key_id: String,
    },
    /// The baseline inside does not lint (or the one to sign does not).
    #[error("invalid baseline:\n{0}")]
    InvalidBaseline(#[source] BaselineError),
    /// The signed header disagrees with the baseline it carries.
    #[error("bundle header says {field} {header:?} but the baseline inside says {baseline:?}")]
    Mismatch {
        /// `id` or `version`
        field: &'static str,
        /// header value
        header: String,
        /// value in the baseline
        baseline: String,
    },
    /// The signing key could not be used.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The key id of a raw Ed25519 public key: the first 16 hex digits of its
/// SHA-256. Short enough to read aloud, long enough that no two keys of one
/// organisation collide by accident (collisions on purpose need a trusted
/// key's owner, who can sign anyway).
pub fn key_id_of(raw: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, raw);
    hex(&digest.as_ref()[..8])
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A trusted Ed25519 public key, with its id and an optional comment.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
    key_id: String,
    comment: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {:?})", self.key_id, self.comment)
    }
}

impl PublicKey {
    /// A public key from its 32 raw bytes.
    pub fn from_raw(raw: &[u8], comment: &str) -> Result<PublicKey, KeyError> {
        let raw: [u8; 32] = raw.try_into().map_err(|_| KeyError::PublicKey {
            origin: "public key".into(),
            line: 0,
            reason: format!("an Ed25519 public key is 32 bytes, not {}", raw.len()),
        })?;
        Ok(PublicKey {
            key_id: key_id_of(&raw),
            raw,
            comment: sanitize_comment(comment),
        })
    }

    /// The key id (16 lowercase hex digits).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The comment (who owns the key), possibly empty.
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// The 32 raw bytes.
    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    /// The public key file text:
    /// `plumb-ed25519 <key id> <base64 raw key> [comment]` and a newline.
    pub fn to_text(&self) -> String {
        let mut s = format!("{PUBLIC_KEY_TYPE} {} {}", self.key_id, B64.encode(self.raw));
        if !self.comment.is_empty() {
            s.push(' ');
            s.push_str(&self.comment);
        }
        s.push('\n');
        s
    }

    /// Parses a public key file: blank lines and `#` lines are ignored, and
    /// exactly one key line must remain. The key id written in it must be the
    /// id of the key, so an edited or mixed-up file is caught.
    pub fn parse(text: &str, origin: &str) -> Result<PublicKey, KeyError> {
        let bad = |line, reason: String| KeyError::PublicKey {
            origin: origin.to_string(),
            line,
            reason,
        };
        let mut found: Option<PublicKey> = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if found.is_some() {
                return Err(bad(
                    n,
                    "more than one key line; put each key in its own file".into(),
                ));
            }
            let mut parts = line.splitn(4, [' ', '\t']);
            let kind = parts.next().unwrap_or_default();
            if kind != PUBLIC_KEY_TYPE {
                return Err(bad(
                    n,
                    format!(
                        "expected a line starting with {PUBLIC_KEY_TYPE:?}, found {:?}",
                        clip(kind)
                    ),
                ));
            }
            let stated = parts.next().unwrap_or_default();
            if stated.len() != 16
                || !stated
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(bad(
                    n,
                    format!(
                        "key id must be 16 lowercase hex digits, found {:?}",
                        clip(stated)
                    ),
                ));
            }
            let b64 = parts.next().unwrap_or_default();
            let raw = B64
                .decode(b64)
                .map_err(|e| bad(n, format!("public key is not valid base64: {e}")))?;
            let comment = parts.next().unwrap_or_default().trim();
            let key = PublicKey::from_raw(&raw, comment).map_err(|e| match e {
                KeyError::PublicKey { reason, .. } => bad(n, reason),
                other => other,
            })?;
            if key.key_id != stated {
                return Err(KeyError::KeyIdMismatch {
                    origin: origin.to_string(),
                    stated: stated.to_string(),
                    computed: key.key_id,
                });
            }
            found = Some(key);
        }
        found.ok_or_else(|| bad(0, "the file holds no key line".into()))
    }

    /// Reads a public key file (size-capped).
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        let shown = path.display().to_string();
        let bytes = read_key_file(path, FileKind::PublicKey)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::PublicKey {
            origin: shown.clone(),
            line: 0,
            reason: "file is not UTF-8 text".into(),
        })?;
        PublicKey::parse(text, &shown)
    }
}

/// Comments are free text on one line: control characters would let a
/// comment fake extra lines, so they become spaces.
fn sanitize_comment(c: &str) -> String {
    c.chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect::<String>()
        .trim()
        .to_string()
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Reads a key file through the trust rule for `kind` (a private key must
/// give group and others no access at all).
fn read_key_file(path: &Path, kind: FileKind) -> Result<Vec<u8>, KeyError> {
    let shown = path.display().to_string();
    plumb_os::read_trusted(path, kind, MAX_KEY_FILE_BYTES).map_err(|e| match e.problem {
        Problem::Open(source) | Problem::Io { source, .. } => KeyError::Read {
            path: shown,
            source,
        },
        Problem::TooLarge { size, .. } => KeyError::TooLarge { path: shown, size },
        problem => KeyError::Untrusted(TrustError {
            path: e.path,
            problem,
        }),
    })
}

/// A private Ed25519 signing key (the security team's; kept offline).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secret material.
        write!(f, "SigningKey({})", self.public.key_id)
    }
}

/// A freshly generated key: the private key file text (PEM, PKCS#8) and its
/// public half.
pub struct GeneratedKey {
    /// `-----BEGIN PRIVATE KEY-----` PEM text of the PKCS#8 document.
    pub private_pem: String,
    /// The public key, with the comment given.
    pub public: PublicKey,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GeneratedKey({})", self.public.key_id)
    }
}

impl SigningKey {
    /// Generates a key pair from the system's secure random generator.
    pub fn generate(comment: &str) -> Result<GeneratedKey, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
        let key = SigningKey::from_pkcs8(doc.as_ref(), "generated key", comment)?;
        Ok(GeneratedKey {
            private_pem: pem_encode(doc.as_ref()),
            public: key.public,
        })
    }

    /// A key from a PKCS#8 document (v2 as `ring` writes, or v1 as
    /// `openssl genpkey -algorithm ed25519` writes).
    pub fn from_pkcs8(der: &[u8], origin: &str, comment: &str) -> Result<SigningKey, KeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| KeyError::PrivateKey {
                origin: origin.to_string(),
                reason: format!("PKCS#8 document rejected ({e}); is it an Ed25519 key?"),
            })?;
        let public = PublicKey::from_raw(pair.public_key().as_ref(), comment)?;
        Ok(SigningKey { pair, public })
    }

    /// A key from PEM text (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(text: &str, origin: &str) -> Result<SigningKey, KeyError> {
        let der = pem_decode(text).map_err(|e| KeyError::PrivateKey {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        SigningKey::from_pkcs8(&der, origin, "")
    }

    /// Reads a private key file; refuses one that group or others can access.
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let shown = path.display().to_string();
        let bytes = read_key_file(path, FileKind::PrivateKey)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::PrivateKey {
            origin: shown.clone(),
            reason: "file is not PEM text".into(),
        })?;
        SigningKey::from_pem(text, &shown)
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.public.key_id
    }
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut s = String::with_capacity(b64.len() + 80);
    s.push_str(PEM_BEGIN);
    s.push('\n');
    // Base64 output is ASCII, so byte chunks are valid str slices.
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(PEM_END);
    s.push('\n');
    s
}

/// Why a private key's PEM text cannot be decoded (the `reason` of
/// [`KeyError::PrivateKey`]).
#[derive(Debug, thiserror::Error)]
enum PemDecodeError {
    #[error("found {0:?}; only unencrypted PKCS#8 keys (as `plumb keygen` writes) are read")]
    OtherKind(String),
    #[error("expected a first line {begin:?}", begin = PEM_BEGIN)]
    NoBegin,
    #[error("no {end:?} line (file truncated?)", end = PEM_END)]
    NoEnd,
    #[error("unexpected text after {end:?}", end = PEM_END)]
    TrailingText,
    #[error("bad base64 in the PEM body: {0}")]
    Base64(base64::DecodeError),
}

fn pem_decode(text: &str) -> Result<Vec<u8>, PemDecodeError> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let first = lines.first().copied().unwrap_or_default();
    if first != PEM_BEGIN {
        return Err(if first.starts_with("-----BEGIN ") {
            PemDecodeError::OtherKind(first.to_owned())
        } else {
            PemDecodeError::NoBegin
        });
    }
    let Some(end) = lines.iter().position(|l| *l == PEM_END) else {
        return Err(PemDecodeError::NoEnd);
    };
    if end + 1 != lines.len() {
        return Err(PemDecodeError::TrailingText);
    }
    let body: String = lines[1..end].concat();
    B64.decode(body.as_bytes()).map_err(PemDecodeError::Base64)
}

/// A parsed (not yet verified) bundle.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    id: String,
    version: u64,
    key_id: String,
    signature: [u8; 64],
    payload: Vec<u8>,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Bundle({} v{} key {} {} bytes)",
            self.id,
            self.version,
            self.key_id,
            self.payload.len()
        )
    }
}

/// A bundle whose signature verified with a trusted key, whose header agrees
/// with its baseline, and whose baseline lints.
#[derive(Debug, Clone)]
pub struct VerifiedBaseline {
    /// The validated baseline.
    pub baseline: Baseline,
    /// Id of the trusted key that signed it.
    pub key_id: String,
    /// The bundle itself (store or forward `bundle.to_bytes()`).
    pub bundle: Bundle,
}

/// The exact bytes a bundle signature covers: every field length-prefixed,
/// so no two different (id, version, key, payload) tuples share a message.
fn signed_message(id: &str, version: u64, key_id: &str, payload: &[u8]) -> Vec<u8> {
    fn field(m: &mut Vec<u8>, b: &[u8]) {
        m.extend_from_slice(&(b.len() as u64).to_be_bytes());
        m.extend_from_slice(b);
    }
    let mut m = Vec::with_capacity(payload.len() + 128);
    field(&mut m, SIGNATURE_CONTEXT.as_bytes());
    m.extend_from_slice(&BUNDLE_FORMAT.to_be_bytes());
    field(&mut m, id.as_bytes());
    m.extend_from_slice(&version.to_be_bytes());
    field(&mut m, key_id.as_bytes());
    field(&mut m, payload);
    m
}

fn valid_baseline_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// Reads header lines one at a time, never past the input.
struct Cursor<'a> {
    rest: &'a [u8],
    line: usize,
}

impl<'a> Cursor<'a> {
    /// The next line without its `\n`; `what` names it for the truncation error.
    fn next_line(&mut self, what: &str) -> Result<&'a str, BundleError> {
        self.line += 1;
        let window = &self.rest[..self.rest.len().min(MAX_HEADER_LINE + 1)];
        let Some(nl) = window.iter().position(|&b| b == b'\n') else {
            if self.rest.len() > MAX_HEADER_LINE {
                return Err(BundleError::BadHeader {
                    line: self.line,
                    reason: format!("line longer than {MAX_HEADER_LINE} bytes"),
                });
            }
            return Err(BundleError::Truncated {
                what: what.to_string(),
            });
        };
        let raw = &self.rest[..nl];
        self.rest = &self.rest[nl + 1..];
        if let Some(bad) = raw.iter().find(|&&b| !(0x20..0x7f).contains(&b)) {
            return Err(BundleError::BadHeader {
                line: self.line,
                reason: format!(
                    "byte 0x{bad:02x} is not printable ASCII (header lines end with a bare \\n)"
                ),
            });
        }
        // Checked just above: every byte is printable ASCII.
        std::str::from_utf8(raw).map_err(|_| BundleError::BadHeader {
            line: self.line,
            reason: "not ASCII".into(),
        })
    }

    /// The value of the `name: value` line expected next.
    fn field(&mut self, name: &str) -> Result<&'a str, BundleError> {
        let line = self.next_line(&format!("the {name:?} header line"))?;
        let prefix = format!("{name}: ");
        match line.strip_prefix(&prefix) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(BundleError::BadHeader {
                line: self.line,
                reason: format!("{name:?} has an empty value"),
            }),
            None => Err(BundleError::BadHeader {
                line: self.line,
                reason: format!(
                    "expected \"{prefix}...\" (fields in the order {}), found {:?}",
                    FIELDS.join(", "),
                    clip(line)
                ),
            }),
        }
    }
}

/// A canonical unsigned decimal: no sign, no leading zero, no spaces.
fn parse_decimal(v: &str, name: &str, line: usize) -> Result<u64, BundleError> {
    let n: u64 = v.parse().map_err(|_| BundleError::BadHeader {
        line,
        reason: format!("{name} {:?} is not an unsigned integer", clip(v)),
    })?;
    if n.to_string() != v {
        return Err(BundleError::BadHeader {
            line,
            reason: format!(
                "{name} {:?} is not written canonically (no sign, no leading zeros)",
                clip(v)
            ),
        });
    }
    Ok(n)
}

impl Bundle {
    /// Parses a bundle. Structural checks only: call [`Bundle::verify`]
    /// before trusting anything in it.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge {
                what: "bundle",
                size: bytes.len() as u64,
                limit: MAX_BUNDLE_BYTES,
            });
        }
        let family = "plumb-baseline-bundle ";
        if !bytes.starts_with(family.as_bytes()) {
            if BUNDLE_MAGIC.as_bytes().starts_with(bytes) {
                return Err(BundleError::Truncated {
                    what: "the end of the first line".into(),
                });
            }
            let head = &bytes[..bytes.len().min(40)];
            let head = head.split(|&b| b == b'\n').next().unwrap_or_default();
            return Err(BundleError::BadMagic {
                found: String::from_utf8_lossy(head).into_owned(),
            });
        }
        let mut c = Cursor {
            rest: bytes,
            line: 0,
        };
        let magic = c.next_line("the end of the first line")?;
        if magic != BUNDLE_MAGIC {
            return Err(BundleError::UnsupportedFormat { found: clip(magic) });
        }
        let id = c.field("id")?;
        if !valid_baseline_id(id) {
            return Err(BundleError::BadHeader {
                line: c.line,
                reason: format!("id {:?} is not of the form [a-z0-9._-]+", clip(id)),
            });
        }
        let version = parse_decimal(c.field("version")?, "version", c.line)?;
        let key_id = c.field("key-id")?;
        if key_id.len() != 16
            || !key_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(BundleError::BadHeader {
                line: c.line,
                reason: format!("key-id {:?} is not 16 lowercase hex digits", clip(key_id)),
            });
        }
        let sig_b64 = c.field("signature")?;
        let sig = B64.decode(sig_b64).map_err(|e| BundleError::BadHeader {
            line: c.line,
            reason: format!("signature is not valid base64: {e}"),
        })?;
        let signature: [u8; 64] =
            sig.as_slice()
                .try_into()
                .map_err(|_| BundleError::BadHeader {
                    line: c.line,
                    reason: format!(
                        "signature is {} bytes, an Ed25519 signature is 64",
                        sig.len()
                    ),
                })?;
        let declared = parse_decimal(c.field("length")?, "length", c.line)?;
        if declared > MAX_BASELINE_BYTES {
            return Err(BundleError::TooLarge {
                what: "baseline",
                size: declared,
                limit: MAX_BASELINE_BYTES,
            });
        }
        let blank = c.next_line("the blank line that ends the header")?;
        if !blank.is_empty() {
            return Err(BundleError::BadHeader {
                line: c.line,
                reason: format!(
                    "expected the blank line that ends the header, found {:?}",
                    clip(blank)
                ),
            });
        }
        let actual = c.rest.len() as u64;
        if actual < declared {
            return Err(BundleError::PayloadTruncated { declared, actual });
        }
        if actual > declared {
            return Err(BundleError::TrailingData {
                declared,
                extra: actual - declared,
            });
        }
        Ok(Bundle {
            id: id.to_string(),
            version,
            key_id: key_id.to_string(),
            signature,
            payload: c.rest.to_vec(),
        })
    }

    /// Reads and parses a bundle file, reading no more than the size limit.
    pub fn load(path: &Path) -> Result<Bundle, BundleError> {
        let shown = path.display().to_string();
        let read_err = |source| BundleError::Read {
            path: shown.clone(),
            source,
        };
        let file =
            plumb_os::open_trusted(path, FileKind::Baseline).map_err(|e| match e.problem {
                Problem::Open(source) => read_err(source),
                problem => BundleError::Untrusted(TrustError {
                    path: e.path,
                    problem,
                }),
            })?;
        let mut bytes = Vec::new();
        // One byte past the cap, so the parser reports an oversized bundle.
        file.into_file()
            .take(MAX_BUNDLE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        Bundle::parse(&bytes)
    }

    /// Signs a baseline: it must lint first. `origin` names the baseline file
    /// in lint messages. The header's id and version are taken from the
    /// baseline itself, so they always agree.
    pub fn sign(baseline: &[u8], origin: &str, key: &SigningKey) -> Result<Bundle, BundleError> {
        if baseline.len() as u64 > MAX_BASELINE_BYTES {
            return Err(BundleError::TooLarge {
                what: "baseline",
                size: baseline.len() as u64,
                limit: MAX_BASELINE_BYTES,
            });
        }
        let parsed =
            Baseline::from_bytes(baseline, origin).map_err(BundleError::InvalidBaseline)?;
        Ok(Bundle::sign_raw(&parsed.id, parsed.version, baseline, key))
    }

    /// Signs whatever it is given; only [`Bundle::sign`] and tests call it.
    fn sign_raw(id: &str, version: u64, payload: &[u8], key: &SigningKey) -> Bundle {
        let msg = signed_message(id, version, key.key_id(), payload);
        let sig = key.pair.sign(&msg);
        let mut signature = [0u8; 64];
        // An Ed25519 signature is always 64 bytes.
        signature.copy_from_slice(&sig.as_ref()[..64]);
        Bundle {
            id: id.to_string(),
            version,
            key_id: key.key_id().to_string(),
            signature,
            payload: payload.to_vec(),
        }
    }

    /// The canonical encoding ([`Bundle::parse`] accepts exactly this).
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = format!(
            "{BUNDLE_MAGIC}\nid: {}\nversion: {}\nkey-id: {}\nsignature: {}\nlength: {}\n\n",
            self.id,
            self.version,
            self.key_id,
            B64.encode(self.signature),
            self.payload.len()
        );
        let mut out = Vec::with_capacity(header.len() + self.payload.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Baseline id named in the header (unverified until [`Bundle::verify`]).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Baseline version named in the header (unverified until [`Bundle::verify`]).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Id of the key that claims to have signed it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The baseline bytes carried (unverified until [`Bundle::verify`]).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Verifies the bundle against the trusted keys: the signing key must be
    /// one of them, the signature must cover this exact header and payload,
    /// the baseline must lint, and its id and version must be the header's.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<VerifiedBaseline, BundleError> {
        if trusted.is_empty() {
            return Err(BundleError::NoTrustedKeys);
        }
        let candidates: Vec<&PublicKey> =
            trusted.iter().filter(|k| k.key_id == self.key_id).collect();
        if candidates.is_empty() {
            return Err(BundleError::UnknownKey {
                key_id: self.key_id.clone(),
                trusted: trusted.iter().map(|k| k.key_id.clone()).collect(),
            });
        }
        let msg = signed_message(&self.id, self.version, &self.key_id, &self.payload);
        let ok = candidates.iter().any(|k| {
            UnparsedPublicKey::new(&ED25519, k.raw)
                .verify(&msg, &self.signature)
                .is_ok()
        });
        if !ok {
            return Err(BundleError::BadSignature {
                key_id: self.key_id.clone(),
            });
        }
        let origin = format!("bundle {} v{} (baseline)", self.id, self.version);
        let baseline =
            Baseline::from_bytes(&self.payload, &origin).map_err(BundleError::InvalidBaseline)?;
        if baseline.id != self.id {
            return Err(BundleError::Mismatch {
                field: "id",
                header: self.id.clone(),
                baseline: baseline.id,
            });
        }
        if baseline.version != self.version {
            return Err(BundleError::Mismatch {
                field: "version",
                header: self.version.to_string(),
                baseline: baseline.version.to_string(),
            });
        }
        Ok(VerifiedBaseline {
            baseline,
            key_id: self.key_id.clone(),
            bundle: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn baseline(id: &str, version: u64) -> Vec<u8> {
        format!(
            "schema = 1\nid = \"{id}\"\nversion = {version}\ntitle = \"t\"\n\n[[rule]]\nid = \"r\"\ntitle = \"r\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\ncheck = {{ kind = \"file\", path = \"/etc/passwd\", exists = true }}\n"
        )
        .into_bytes()
    }

    fn key() -> SigningKey {
        let g = SigningKey::generate("security team").unwrap();
        SigningKey::from_pem(&g.private_pem, "test").unwrap()
    }

    fn signed(k: &SigningKey, id: &str, version: u64) -> Vec<u8> {
        Bundle::sign(&baseline(id, version), "b.toml", k)
            .unwrap()
            .to_bytes()
    }

    #[test]
    fn round_trip_and_canonical_encoding() {
        let k = key();
        let bytes = signed(&k, "issp", 7);
        let b = Bundle::parse(&bytes).unwrap();
        assert_eq!(b.to_bytes(), bytes);
        assert_eq!((b.id(), b.version(), b.key_id()), ("issp", 7, k.key_id()));
        let v = b.verify(std::slice::from_ref(k.public_key())).unwrap();
        assert_eq!(v.baseline.id, "issp");
        assert_eq!(v.baseline.version, 7);
        assert_eq!(v.key_id, k.key_id());
        assert_eq!(v.bundle.payload(), baseline("issp", 7).as_slice());
    }

    #[test]
    fn every_single_byte_change_is_refused() {
        let k = key();
        let trusted = [k.public_key().clone()];
        let bytes = signed(&k, "issp", 7);
        for i in 0..bytes.len() {
            let mut m = bytes.clone();
            m[i] ^= 0x01;
            // A flip either breaks the structure or the signature; never accepted.
            if let Ok(b) = Bundle::parse(&m) {
                let e = b.verify(&trusted).unwrap_err();
                assert!(
                    matches!(
                        e,
                        BundleError::BadSignature { .. } | BundleError::UnknownKey { .. }
                    ),
                    "byte {i}: {e}"
                );
            }
        }
    }

    #[test]
    fn header_id_or_version_swap_breaks_the_signature() {
        let k = key();
        let trusted = [k.public_key().clone()];
        let text = String::from_utf8(signed(&k, "issp", 7)).unwrap();
        for (from, to) in [
            ("version: 7\n", "version: 8\n"),
            ("id: issp\n", "id: issq\n"),
        ] {
            let b = Bundle::parse(text.replacen(from, to, 1).as_bytes()).unwrap();
            let e = b.verify(&trusted).unwrap_err();
            assert!(matches!(e, BundleError::BadSignature { .. }), "{e}");
        }
    }

    #[test]
    fn signed_header_disagreeing_with_baseline_is_refused() {
        let k = key();
        let trusted = [k.public_key().clone()];
        let b = Bundle::sign_raw("issp", 8, &baseline("issp", 7), &k);
        let e = b.verify(&trusted).unwrap_err();
        assert!(e.to_string().contains("version \"8\""), "{e}");
        let b = Bundle::sign_raw("other", 7, &baseline("issp", 7), &k);
        let e = b.verify(&trusted).unwrap_err();
        assert!(
            matches!(e, BundleError::Mismatch { field: "id", .. }),
            "{e}"
        );
    }

    #[test]
    fn signed_invalid_baseline_is_refused_on_verify() {
        let k = key();
        let b = Bundle::sign_raw(
            "issp",
            7,
            b"schema = 1\nid = \"issp\"\nversion = 7\nbogus = 1\n",
            &k,
        );
        let e = b.verify(&[k.public_key().clone()]).unwrap_err();
        assert!(matches!(e, BundleError::InvalidBaseline(_)), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn sign_refuses_invalid_baseline() {
        let k = key();
        let e = Bundle::sign(
            b"schema = 1\nid = \"x\"\nversion = 1\nnope = 2\n",
            "bad.toml",
            &k,
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad.toml:4"), "{e}");
    }

    #[test]
    fn unknown_key_and_no_keys() {
        let (a, b) = (key(), key());
        let bytes = signed(&a, "issp", 1);
        let bundle = Bundle::parse(&bytes).unwrap();
        let e = bundle.verify(&[b.public_key().clone()]).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("unknown key {}", a.key_id())),
            "{e}"
        );
        assert!(e.to_string().contains(b.key_id()), "{e}");
        assert!(matches!(
            bundle.verify(&[]),
            Err(BundleError::NoTrustedKeys)
        ));
        // A key claiming another's id cannot verify.
        let mut forged = Bundle::sign_raw("issp", 1, &baseline("issp", 1), &b);
        forged.key_id = a.key_id().to_string();
        let e = forged.verify(&[a.public_key().clone()]).unwrap_err();
        assert!(matches!(e, BundleError::BadSignature { .. }), "{e}");
        // Two trusted keys: the right one is picked.
        bundle
            .verify(&[b.public_key().clone(), a.public_key().clone()])
            .unwrap();
    }

    #[test]
    fn every_truncation_is_a_clear_error() {
        let k = key();
        let bytes = signed(&k, "issp", 7);
        for n in 0..bytes.len() {
            let e = Bundle::parse(&bytes[..n]).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("truncated"), "cut at {n}: {msg}");
        }
    }

    #[test]
    fn malformed_bundles_name_the_problem() {
        let k = key();
        let good = String::from_utf8(signed(&k, "issp", 7)).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"garbage\x00\xff".to_vec(), "not a baseline bundle"),
            (
                b"-----BEGIN PRIVATE KEY-----\n".to_vec(),
                "not a baseline bundle",
            ),
            (
                good.replacen("bundle 1\n", "bundle 2\n", 1).into_bytes(),
                "unsupported bundle format",
            ),
            (format!("{good}x").into_bytes(), "1 bytes of trailing data"),
            (
                good.replacen("version: 7", "version: 07", 1).into_bytes(),
                "not written canonically",
            ),
            (
                good.replacen("version: 7", "version: -7", 1).into_bytes(),
                "not an unsigned integer",
            ),
            (
                good.replacen("version: 7", "version:  7", 1).into_bytes(),
                "not an unsigned integer",
            ),
            (
                good.replacen("id: issp", "id: ISSP/..", 1).into_bytes(),
                "line 2: id",
            ),
            (
                good.replacen("key-id: ", "key-id: zz", 1).into_bytes(),
                "line 4: key-id",
            ),
            (
                good.replacen("signature: ", "signature: *", 1).into_bytes(),
                "not valid base64",
            ),
            (
                good.replacen("signature: ", "signature: AAAA", 1)
                    .into_bytes(),
                "an Ed25519 signature is 64",
            ),
            (
                good.replacen("length: ", "length: 99999999", 1)
                    .into_bytes(),
                "larger than",
            ),
            (
                good.replacen("id: ", "name: ", 1).into_bytes(),
                "expected \"id: ...\"",
            ),
            (
                good.replacen("\n\n", "\nextra: 1\n\n", 1).into_bytes(),
                "expected the blank line",
            ),
            (good.replacen("\n", "\r\n", 1).into_bytes(), "0x0d"),
            (
                good.replacen("length: ", "length: 1", 1).into_bytes(),
                "truncated",
            ),
            (vec![b'a'; 2000], "not a baseline bundle"),
            (
                format!("{BUNDLE_MAGIC}\nid: {}\n", "a".repeat(1000)).into_bytes(),
                "longer than",
            ),
        ];
        for (input, want) in cases {
            let e = Bundle::parse(&input).unwrap_err().to_string();
            assert!(e.contains(want), "want {want:?}, got {e:?}");
        }
        let huge = vec![b'a'; MAX_BUNDLE_BYTES as usize + 1];
        assert!(matches!(
            Bundle::parse(&huge),
            Err(BundleError::TooLarge { what: "bundle", .. })
        ));
    }

    #[test]
    fn length_mismatch_short_payload() {
        let k = key();
        let bytes = signed(&k, "issp", 7);
        let e = Bundle::parse(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(matches!(e, BundleError::PayloadTruncated { .. }), "{e}");
    }

    #[test]
    fn public_key_text_round_trip_and_errors() {
        let g = SigningKey::generate("sec team 2026").unwrap();
        let text = g.public.to_text();
        assert!(text.starts_with(&format!("plumb-ed25519 {} ", g.public.key_id())));
        assert!(text.ends_with(" sec team 2026\n"));
        let p = PublicKey::parse(&format!("# trusted\n\n{text}"), "k.pub").unwrap();
        assert_eq!(p, g.public);
        assert_eq!(p.key_id().len(), 16);

        let other = SigningKey::generate("").unwrap().public;
        let swapped = text.replacen(g.public.key_id(), other.key_id(), 1);
        let e = PublicKey::parse(&swapped, "k.pub").unwrap_err();
        assert!(matches!(e, KeyError::KeyIdMismatch { .. }), "{e}");
        for (bad, want) in [
            ("", "no key line"),
            ("ssh-ed25519 AAAA x", "expected a line starting with"),
            ("plumb-ed25519 0123 AAAA", "16 lowercase hex"),
            ("plumb-ed25519 0123456789abcdef !!!", "not valid base64"),
            ("plumb-ed25519 0123456789abcdef AAAA", "32 bytes"),
        ] {
            let e = PublicKey::parse(bad, "k.pub").unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: want {want:?}, got {e:?}");
        }
        let two = format!("{text}{}", other.to_text());
        let e = PublicKey::parse(&two, "k.pub").unwrap_err().to_string();
        assert!(
            e.contains("k.pub:2: ") && e.contains("more than one"),
            "{e}"
        );
        // A comment cannot smuggle a second line.
        let c = SigningKey::generate("a\nplumb-ed25519 x").unwrap().public;
        assert_eq!(c.to_text().lines().count(), 1);
    }

    #[test]
    fn private_key_pem_errors() {
        let g = SigningKey::generate("").unwrap();
        let k = SigningKey::from_pem(&g.private_pem, "k").unwrap();
        assert_eq!(k.key_id(), g.public.key_id());
        for (bad, want) in [
            ("", "expected a first line"),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
                "only unencrypted PKCS#8",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n",
                "truncated",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
                "bad base64",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "PKCS#8 document rejected",
            ),
        ] {
            let e = SigningKey::from_pem(bad, "k").unwrap_err().to_string();
            assert!(e.contains(want), "want {want:?}, got {e:?}");
        }
        // Debug never shows secret material.
        assert!(!format!("{k:?}").contains("BEGIN"));
    }

    #[test]
    fn openssl_v1_pkcs8_key_is_accepted() {
        // `openssl genpkey -algorithm ed25519` output (PKCS#8 v1, no public key).
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let k = SigningKey::from_pem(pem, "openssl.pem").unwrap();
        let b = Bundle::sign(&baseline("x", 1), "x.toml", &k).unwrap();
        b.verify(&[k.public_key().clone()]).unwrap();
    }

    #[test]
    fn file_loading_caps_and_permissions() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let g = SigningKey::generate("").unwrap();
        let kp = dir.path().join("k");
        std::fs::write(&kp, &g.private_pem).unwrap();
        std::fs::set_permissions(&kp, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SigningKey::load(&kp).unwrap_err();
        assert!(e.to_string().contains("mode 0644"), "{e}");
        std::fs::set_permissions(&kp, std::fs::Permissions::from_mode(0o600)).unwrap();
        SigningKey::load(&kp).unwrap();

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'#'; MAX_KEY_FILE_BYTES as usize + 10]).unwrap();
        assert!(matches!(
            PublicKey::load(&big),
            Err(KeyError::TooLarge { .. })
        ));
        let e = Bundle::load(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("cannot read bundle"), "{e}");
    }
}
