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
mod tests {
    //! Known-answer tests from `../shared/data/sm/vectors.json` (GB/T 32905, GB/T 32907,
    //! GM/T 0003.5 Annex A) and RFC 8998's SM4-GCM example, plus tamper checks.

    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/sm/vectors.json"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (the shared data must sit beside the repo)"));
        serde_json::from_str(&text).expect("vectors.json parses")
    }

    fn unhex(v: &Value) -> Vec<u8> {
        hex::decode(v.as_str().expect("hex string")).expect("valid hex")
    }

    #[test]
    fn sm3_known_answers() {
        let v = vectors();
        let cases = v["sm3"].as_array().expect("sm3 cases");
        assert_eq!(cases.len(), 2);
        for c in cases {
            let msg = c["message_ascii"].as_str().unwrap().as_bytes();
            assert_eq!(sm3(msg).to_vec(), unhex(&c["digest"]), "{}", c["source"]);
            let (a, b) = msg.split_at(msg.len() / 2);
            assert_eq!(sm3_parts(&[a, b]).to_vec(), unhex(&c["digest"]));
        }
    }

    #[test]
    fn sm4_known_answers() {
        use aes_gcm::aead::array::Array;
        use sm4::cipher::{BlockCipherEncrypt, KeyInit};
        let v = vectors();
        let cases = v["sm4"].as_array().expect("sm4 cases");
        assert_eq!(cases.len(), 2);
        for c in cases {
            let iterations = c["iterations"].as_u64().unwrap();
            if cfg!(debug_assertions) && iterations > 1000 {
                // The 1,000,000-iteration example runs in release builds (`cargo test --release`).
                continue;
            }
            let cipher = sm4::Sm4::new_from_slice(&unhex(&c["key"])).unwrap();
            let mut block = Array::try_from(unhex(&c["plaintext"]).as_slice()).unwrap();
            for _ in 0..iterations {
                cipher.encrypt_block(&mut block);
            }
            assert_eq!(block.to_vec(), unhex(&c["ciphertext"]), "{}", c["source"]);
        }
    }

    #[test]
    fn sm2_annex_a_signature_verifies() {
        let v = vectors();
        let c = &v["sm2_signature"][0];
        assert_eq!(c["id_ascii"].as_str(), Some(SM2_DIST_ID));
        let mut point = vec![0x04];
        point.extend(unhex(&c["public_key_x"]));
        point.extend(unhex(&c["public_key_y"]));
        let verifier = Sm2Verifier::from_sec1(&point).unwrap();
        let msg = c["message_ascii"].as_str().unwrap().as_bytes();
        let mut sig = unhex(&c["r"]);
        sig.extend(unhex(&c["s"]));
        verifier
            .verify(msg, &sig)
            .expect("Annex A signature verifies");
        // Z_A = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA) and e = SM3(Z_A ‖ M), as in the annex.
        let curve = |h: &str| hex::decode(h).unwrap();
        let a = curve("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC");
        let b = curve("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93");
        let xg = curve("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7");
        let yg = curve("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0");
        let id = SM2_DIST_ID.as_bytes();
        let entl = ((id.len() * 8) as u16).to_be_bytes();
        let za = sm3_parts(&[
            &entl,
            id,
            &a,
            &b,
            &xg,
            &yg,
            &unhex(&c["public_key_x"]),
            &unhex(&c["public_key_y"]),
        ]);
        assert_eq!(za.to_vec(), unhex(&c["z_a"]));
        assert_eq!(sm3_parts(&[&za, msg]).to_vec(), unhex(&c["e"]));
        // Any flipped bit in the signature, message or key is refused.
        for i in [0, 31, 32, 63] {
            let mut bad = sig.clone();
            bad[i] ^= 0x01;
            assert_eq!(verifier.verify(msg, &bad), Err(CryptoError::BadSignature));
        }
        assert_eq!(
            verifier.verify(b"message digesT", &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            verifier.verify(msg, &sig[..63]),
            Err(CryptoError::BadSignature)
        );
        let mut other = point.clone();
        other[40] ^= 1;
        if let Ok(other) = Sm2Verifier::from_sec1(&other) {
            assert!(other.verify(msg, &sig).is_err());
        }
    }

    #[test]
    fn sm4_gcm_matches_rfc8998() {
        let key =
            SymKey::from_bytes(&hex::decode("0123456789ABCDEFFEDCBA9876543210").unwrap()).unwrap();
        let nonce: [u8; 12] = hex::decode("00001234567800000000ABCD")
            .unwrap()
            .try_into()
            .unwrap();
        let aad = hex::decode("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2").unwrap();
        let pt = hex::decode(concat!(
            "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD",
            "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
        ))
        .unwrap();
        let ct = key.seal_with_nonce(&nonce, &aad, &pt).unwrap();
        assert_eq!(
            hex::encode_upper(&ct),
            concat!(
                "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735",
                "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D",
                "83DE3541E4C2B58177E065A9BF7B62EC"
            )
        );
    }

    #[test]
    fn a_flipped_bit_in_nonce_ciphertext_or_tag_is_refused() {
        let key = SymKey::generate().unwrap();
        let sealed = key.seal(b"aad", b"attack at dawn").unwrap();
        assert_eq!(
            key.open("record", b"aad", &sealed).unwrap(),
            b"attack at dawn"
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x80;
            assert_eq!(
                key.open("record", b"aad", &bad),
                Err(CryptoError::Tampered("record")),
                "byte {i}"
            );
        }
        assert_eq!(
            key.open("record", b"aaD", &sealed),
            Err(CryptoError::Tampered("record"))
        );
        assert_eq!(
            key.open("record", b"aad", &sealed[..SEAL_OVERHEAD - 1]),
            Err(CryptoError::Truncated(SEAL_OVERHEAD - 1))
        );
        let other = SymKey::generate().unwrap();
        assert!(other.open("record", b"aad", &sealed).is_err());
    }

    #[test]
    fn wrapped_keys_unwrap_only_intact_and_under_their_version() {
        let mut ring = MasterKeyring::generate().unwrap();
        let dk = SymKey::generate().unwrap();
        let (v, wrapped) = ring.wrap(b"doc", &dk).unwrap();
        assert_eq!(v, 1);
        assert_eq!(
            ring.unwrap(1, b"doc", &wrapped).unwrap().bytes(),
            dk.bytes()
        );
        let mut bad = wrapped.clone();
        bad[NONCE_LEN + 3] ^= 1;
        assert_eq!(
            ring.unwrap(1, b"doc", &bad).unwrap_err(),
            CryptoError::Tampered("wrapped data key")
        );
        assert!(ring.unwrap(1, b"other", &wrapped).is_err());
        assert_eq!(
            ring.unwrap(2, b"doc", &wrapped).unwrap_err(),
            CryptoError::UnknownMasterKey(2)
        );
        assert_eq!(ring.add_version().unwrap(), 2);
        let parsed = MasterKeyring::parse(&ring.to_text()).unwrap();
        assert_eq!(parsed.versions(), vec![1, 2]);
        assert_eq!(
            parsed.unwrap(1, b"doc", &wrapped).unwrap().bytes(),
            dk.bytes()
        );
        assert_eq!(parsed.wrap(b"doc", &dk).unwrap().0, 2);
        ring.retire_old();
        assert_eq!(ring.versions(), vec![2]);
        assert!(format!("{ring:?}").contains("[2]"));
    }

    #[test]
    fn keyring_text_errors_are_typed() {
        for bad in [
            "",
            "# only a comment",
            "1",
            "x 00",
            "0 00112233445566778899aabbccddeeff",
            "1 0011",
            "1 zz112233445566778899aabbccddeeff",
            "1 00112233445566778899aabbccddeeff;1 00112233445566778899aabbccddeeff",
        ] {
            assert!(
                matches!(
                    MasterKeyring::parse(bad),
                    Err(CryptoError::Malformed { .. })
                ),
                "{bad:?}"
            );
        }
        let ring = MasterKeyring::parse(
            "2 00112233445566778899aabbccddeeff; 1 ffeeddccbbaa99887766554433221100",
        )
        .unwrap();
        assert_eq!(ring.current_version(), Some(2));
    }

    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let ring = MasterKeyring::generate().unwrap();
        write_secret_file(&path, &ring.to_text()).unwrap();
        assert_eq!(MasterKeyring::load(&path).unwrap().versions(), vec![1]);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = MasterKeyring::load(&path).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn sm2_keys_round_trip_through_pem() {
        let (private, public) = generate_sm2_pem().unwrap();
        let signer = Sm2Signer::from_pem(&private).unwrap();
        let verifier = Sm2Verifier::from_pem(&public).unwrap();
        let sig = signer.sign(b"checkpoint");
        verifier.verify(b"checkpoint", &sig).unwrap();
        assert_eq!(verifier.fingerprint(), signer.verifier().fingerprint());
        assert!(matches!(
            Sm2Verifier::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
            Err(CryptoError::Malformed { .. })
        ));
    }

    #[test]
    fn hmac_sm3_checks_tags() {
        let tag = hmac_sm3(b"k", b"msg");
        hmac_sm3_verify(b"k", b"msg", &tag).unwrap();
        assert!(hmac_sm3_verify(b"k", b"msh", &tag).is_err());
        assert!(hmac_sm3_verify(b"j", b"msg", &tag).is_err());
        assert!(hmac_sm3_verify(b"k", b"msg", &tag[..31]).is_err());
    }
}
