//! Unit tests of `crypto.rs`.

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
