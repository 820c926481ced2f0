//! The Chinese national algorithms coedit uses, behind one small API: SM3 hashes, HMAC-SM3,
//! SM4-GCM sealing (RFC 8998), SM2 signatures with the distinguishing id
//! [`SM2_DIST_ID`], and the master key ring that wraps per-document data keys.
//!
//! Invariants:
//! - Every failure is a typed [`CryptoError`]; nothing here panics on input.
//! - A sealed value is `nonce (12) ‖ ciphertext ‖ tag (16)`; opening checks the tag over the
//!   ciphertext and the caller's associated data, so a flipped bit anywhere, or a value moved
//!   to another place (other associated data), is refused.
//! - Nonces are 96 random bits from the operating system per sealing. A key seals far fewer
//!   than 2^32 values (one document's records), the bound for random GCM nonces.
//! - Key material is zeroed when dropped and never printed (`Debug` shows versions only).
//! - Key files must not be readable by group or others.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::AesGcm;
use hmac::{Hmac, Mac};
use sm2::dsa::signature::{Signer, Verifier};
use sm2::dsa::{Signature, SigningKey, VerifyingKey};
use sm2::elliptic_curve::Generate;
use sm2::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use sm3::{Digest, Sm3};
use thiserror::Error;
use zeroize::Zeroizing;

/// The SM2 distinguishing identifier (GM/T 0009 default), passed explicitly everywhere.
pub const SM2_DIST_ID: &str = "1234567812345678";
/// SM4 key length in bytes.
pub const KEY_LEN: usize = 16;
/// SM4-GCM nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// SM4-GCM tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed value adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// SM2 signature length (`r ‖ s`, 32 bytes each).
pub const SIGNATURE_LEN: usize = 64;
/// SM3 digest length.
pub const DIGEST_LEN: usize = 32;
/// First line of a master key file.
const KEYRING_HEADER: &str = "# coedit master key ring: <version> <32 hex digits> per line";

/// SM4 in Galois/Counter Mode with 96-bit nonces (RFC 8998).
type Sm4Gcm = AesGcm<sm4::Sm4, U12>;

/// A cryptographic failure.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed: the ciphertext, tag, nonce or associated data was altered, or the
    /// key is wrong.
    #[error("authentication failed: {0} was altered or sealed under another key")]
    Tampered(&'static str),
    /// A sealed value is too short to hold a nonce and a tag.
    #[error("sealed value of {0} bytes is truncated")]
    Truncated(usize),
    /// The master key version that wrapped a data key is not in the key ring.
    #[error("master key version {0} is not in the key ring")]
    UnknownMasterKey(u32),
    /// The document's data key was destroyed (crypto-shredded).
    #[error("the data key of {0:?} was destroyed")]
    KeyDestroyed(String),
    /// An SM2 signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A key, key file or signature is malformed.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// Why it was refused.
        why: String,
    },
    /// A key file cannot be used.
    #[error("key file {path}: {why}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
}

fn malformed(what: &'static str, why: impl fmt::Display) -> CryptoError {
    CryptoError::Malformed {
        what,
        why: why.to_string(),
    }
}

/// The SM3 digest of `data`.
pub fn sm3(data: &[u8]) -> [u8; DIGEST_LEN] {
    Sm3::digest(data).into()
}

/// The SM3 digest of several parts, hashed as their concatenation.
pub fn sm3_parts(parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let mut h = Sm3::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-SM3 of `msg` under `key`.
pub fn hmac_sm3(key: &[u8], msg: &[u8]) -> [u8; DIGEST_LEN] {
    let mut m =
        <Hmac<Sm3> as hmac::KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// Checks an HMAC-SM3 tag in constant time.
pub fn hmac_sm3_verify(key: &[u8], msg: &[u8], tag: &[u8]) -> Result<(), CryptoError> {
    let mut m =
        <Hmac<Sm3> as hmac::KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    m.update(msg);
    m.verify_slice(tag).map_err(|_| CryptoError::BadSignature)
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(b)
}

/// A 128-bit SM4 key, zeroed on drop.
#[derive(Clone)]
pub struct SymKey(Zeroizing<[u8; KEY_LEN]>);

impl SymKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(SymKey(Zeroizing::new(random_bytes::<KEY_LEN>()?)))
    }

    /// A key from its bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let k: [u8; KEY_LEN] = b
            .try_into()
            .map_err(|_| malformed("SM4 key", format!("{} bytes, want {KEY_LEN}", b.len())))?;
        Ok(SymKey(Zeroizing::new(k)))
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Seals `plaintext` bound to `aad`: `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce = random_bytes::<NONCE_LEN>()?;
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&self.seal_with_nonce(&nonce, aad, plaintext)?);
        Ok(out)
    }

    /// SM4-GCM encryption with a caller-chosen nonce (known-answer tests only need this).
    pub fn seal_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let c = Sm4Gcm::new_from_slice(&self.0[..]).map_err(|e| malformed("SM4 key", e))?;
        c.encrypt(
            nonce.into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| malformed("plaintext", "too long for SM4-GCM"))
    }

    /// Opens a value made by [`SymKey::seal`] with the same `aad`. `what` names the value in
    /// the error.
    pub fn open(
        &self,
        what: &'static str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(CryptoError::Truncated(sealed.len()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        let c = Sm4Gcm::new_from_slice(&self.0[..]).map_err(|e| malformed("SM4 key", e))?;
        c.decrypt(nonce.into(), Payload { msg: ct, aad })
            .map_err(|_| CryptoError::Tampered(what))
    }
}

impl fmt::Debug for SymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymKey(…)")
    }
}

/// Refuses a key file that group or others can read.
fn check_key_file_mode(path: &Path) -> Result<(), CryptoError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| key_file(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_file(
            path,
            format!("mode {mode:o} lets others read it; run chmod 600"),
        ));
    }
    Ok(())
}

fn key_file(path: &Path, why: impl fmt::Display) -> CryptoError {
    CryptoError::KeyFile {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// Reads a secret file after checking its permissions.
fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, CryptoError> {
    check_key_file_mode(path)?;
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| key_file(path, e))
}

/// Writes a secret file readable by its owner only (mode 0600), replacing it atomically.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<(), CryptoError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| key_file(&tmp, e))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| key_file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| key_file(path, e))
}

/// Bytes of a master key check value.
pub const KEY_CHECK_LEN: usize = 16;
/// Message authenticated by a master key check value.
pub const KEY_CHECK_DOMAIN: &[u8] = b"coedit/master-key-check/v1";

/// The master key ring: numbered SM4 keys that wrap data keys. The highest version wraps new
/// keys; older versions stay until every data key has been re-wrapped
/// (`coedit rotate-master-key`).
///
/// Text form (file or `COEDIT_MASTER_KEY`): one `<version> <32 hex digits>` per line (or
/// separated by `;`), `#` comments.
#[derive(Clone, Default)]
pub struct MasterKeyring {
    keys: BTreeMap<u32, SymKey>,
}

impl MasterKeyring {
    /// A ring with one fresh key, version 1.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut ring = MasterKeyring::default();
        ring.keys.insert(1, SymKey::generate()?);
        Ok(ring)
    }

    /// Adds a fresh key with the next version and returns that version.
    pub fn add_version(&mut self) -> Result<u32, CryptoError> {
        let v = self.current_version().map_or(1, |v| v + 1);
        self.keys.insert(v, SymKey::generate()?);
        Ok(v)
    }

    /// Drops every version but the current one.
    pub fn retire_old(&mut self) {
        if let Some(v) = self.current_version() {
            self.keys.retain(|&k, _| k == v);
        }
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let mut keys = BTreeMap::new();
        for line in text.split(['\n', ';']) {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (v, hex_key) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| malformed("master key", "want `<version> <hex key>`"))?;
            let v: u32 = v
                .parse()
                .map_err(|_| malformed("master key", "version is not a number"))?;
            if v == 0 {
                return Err(malformed("master key", "versions start at 1"));
            }
            let bytes = Zeroizing::new(
                hex::decode(hex_key.trim()).map_err(|e| malformed("master key", e))?,
            );
            if keys.insert(v, SymKey::from_bytes(&bytes)?).is_some() {
                return Err(malformed("master key", format!("version {v} twice")));
            }
        }
        if keys.is_empty() {
            return Err(malformed("master key", "no key"));
        }
        Ok(MasterKeyring { keys })
    }

    /// Loads a key file (mode 0600 required).
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        Self::parse(&read_secret_file(path)?).map_err(|e| key_file(path, e))
    }

    /// The text form.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(format!("{KEYRING_HEADER}\n"));
        for (v, k) in &self.keys {
            s.push_str(&format!("{v} {}\n", hex::encode(k.bytes())));
        }
        s
    }

    /// The version that wraps new data keys.
    pub fn current_version(&self) -> Option<u32> {
        self.keys.keys().next_back().copied()
    }

    /// The versions present, ascending.
    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// The key check value of `version`: the first 16 bytes of
    /// HMAC-SM3(key, [`KEY_CHECK_DOMAIN`]). It identifies the key without revealing it; the
    /// store records it per version and refuses a ring whose version N has another value.
    pub fn check_value(&self, version: u32) -> Option<[u8; KEY_CHECK_LEN]> {
        let key = self.keys.get(&version)?;
        let mac = hmac_sm3(key.bytes(), KEY_CHECK_DOMAIN);
        let mut out = [0u8; KEY_CHECK_LEN];
        out.copy_from_slice(&mac[..KEY_CHECK_LEN]);
        Some(out)
    }

    /// Wraps a data key under the current version: `(version, sealed key)`.
    pub fn wrap(&self, aad: &[u8], key: &SymKey) -> Result<(u32, Vec<u8>), CryptoError> {
        let (&v, master) = self
            .keys
            .iter()
            .next_back()
            .ok_or(CryptoError::UnknownMasterKey(0))?;
        Ok((v, master.seal(aad, key.bytes())?))
    }

    /// Unwraps a data key wrapped under `version`.
    pub fn unwrap(&self, version: u32, aad: &[u8], wrapped: &[u8]) -> Result<SymKey, CryptoError> {
        let master = self
            .keys
            .get(&version)
            .ok_or(CryptoError::UnknownMasterKey(version))?;
        let bytes = Zeroizing::new(master.open("wrapped data key", aad, wrapped)?);
        SymKey::from_bytes(&bytes)
    }
}

impl fmt::Debug for MasterKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKeyring(versions {:?})", self.versions())
    }
}

/// An SM2 key pair in PEM: `(PKCS#8 private key, SubjectPublicKeyInfo public key)`.
pub fn generate_sm2_pem() -> Result<(Zeroizing<String>, String), CryptoError> {
    let sk = sm2::SecretKey::try_generate().map_err(|e| CryptoError::Random(e.to_string()))?;
    let private = sk
        .to_pkcs8_pem(Default::default())
        .map_err(|e| malformed("SM2 private key", e))?;
    let public = sk
        .public_key()
        .to_public_key_pem(Default::default())
        .map_err(|e| malformed("SM2 public key", e))?;
    Ok((private, public))
}

/// Signs with an SM2 private key (distinguishing id [`SM2_DIST_ID`]).
pub struct Sm2Signer {
    key: SigningKey,
}

impl Sm2Signer {
    /// From a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let sk =
            sm2::SecretKey::from_pkcs8_pem(pem).map_err(|e| malformed("SM2 private key", e))?;
        let key = SigningKey::new(SM2_DIST_ID, &sk).map_err(|e| malformed("SM2 private key", e))?;
        Ok(Sm2Signer { key })
    }

    /// Loads a PEM private key file (mode 0600 required).
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        Self::from_pem(&read_secret_file(path)?).map_err(|e| key_file(path, e))
    }

    /// The signature `r ‖ s` of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let sig: Signature = self.key.sign(msg);
        sig.to_bytes().into()
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Sm2Verifier {
        Sm2Verifier {
            key: self.key.verifying_key().clone(),
        }
    }
}

impl fmt::Debug for Sm2Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sm2Signer(…)")
    }
}

/// Verifies SM2 signatures (distinguishing id [`SM2_DIST_ID`]).
#[derive(Clone, Debug)]
pub struct Sm2Verifier {
    key: VerifyingKey,
}

impl Sm2Verifier {
    /// From a SubjectPublicKeyInfo PEM public key.
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let pk =
            sm2::PublicKey::from_public_key_pem(pem).map_err(|e| malformed("SM2 public key", e))?;
        Self::from_public_key(pk)
    }

    /// From an uncompressed or compressed SEC1 point.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, CryptoError> {
        let key = VerifyingKey::from_sec1_bytes(SM2_DIST_ID, bytes)
            .map_err(|e| malformed("SM2 public key", e))?;
        Ok(Sm2Verifier { key })
    }

    fn from_public_key(pk: sm2::PublicKey) -> Result<Self, CryptoError> {
        let key = VerifyingKey::new(SM2_DIST_ID, pk).map_err(|e| malformed("SM2 public key", e))?;
        Ok(Sm2Verifier { key })
    }

    /// Loads a PEM public key file.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let pem = std::fs::read_to_string(path).map_err(|e| key_file(path, e))?;
        Self::from_pem(&pem).map_err(|e| key_file(path, e))
    }

    /// Checks a signature `r ‖ s` of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        let sig = Signature::from_slice(sig).map_err(|_| CryptoError::BadSignature)?;
        self.key
            .verify(msg, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// SM3 fingerprint of the public key (SEC1 uncompressed), to name it in records.
    pub fn fingerprint(&self) -> [u8; DIGEST_LEN] {
        sm3(&self.key.to_sec1_bytes())
    }
}

#[cfg(test)]
mod tests;
