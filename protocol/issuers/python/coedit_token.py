"""coedit_token: issues coedit access tokens for application backends.

Signed with SM2 (alg "SM2-SM3") or HMAC-SM3 (alg "HMAC-SM3"), from the key files
`coedit keygen` writes (sm2.pem: PKCS#8 SM2 private key; sm2.pub.pem: SubjectPublicKeyInfo;
hmac.key: hex secret). Owns: the token encoding
`base64url(header).base64url(claims).base64url(sig)` (no padding), claim validation mirroring
the server's rules (actors/src/auth.rs, src/security.rs) and key parsing. The SM2 arithmetic is
gmalg's (nonces from `secrets`); HMAC-SM3 is the standard `hmac` module over hashlib's SM3
(OpenSSL), or over gmalg's SM3 where hashlib has none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import stat
import time
import unicodedata
from typing import Callable, Mapping, Optional, Union

import gmalg

__all__ = [
    "ALG_SM2",
    "ALG_HMAC",
    "TOKEN_TYPE",
    "SM2_DIST_ID",
    "MAX_TOKEN_BYTES",
    "MAX_GRANTS",
    "MAX_TTL_SECONDS",
    "MIN_HMAC_KEY_BYTES",
    "MAX_NAME_CHARS",
    "ROLES",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "HmacKey",
    "sm2_private_key_from_pem",
    "sm2_public_key_from_pem",
    "hmac_key_from_text",
    "hmac_key_from_bytes",
    "load_sm2_private_key_file",
    "load_sm2_public_key_file",
    "load_hmac_key_file",
    "load_key_file",
    "sm2_sign",
    "sm2_verify",
    "hmac_sm3",
    "issue_token",
    "decode_token",
]

#: Header ``alg`` of SM2 tokens.
ALG_SM2 = "SM2-SM3"
#: Header ``alg`` of HMAC-SM3 tokens.
ALG_HMAC = "HMAC-SM3"
#: Header ``typ`` of every coedit token.
TOKEN_TYPE = "coedit"
#: SM2 distinguishing ID (GM/T 0009 default) that coedit verifies with.
SM2_DIST_ID = b"1234567812345678"
#: Longest token the server accepts, in bytes.
MAX_TOKEN_BYTES = 8 * 1024
#: Most grants in one token.
MAX_GRANTS = 256
#: Longest lifetime issued (as ``coedit token issue``: a year and a day).
MAX_TTL_SECONDS = 366 * 86400
#: Shortest HMAC-SM3 secret the server accepts, in bytes.
MIN_HMAC_KEY_BYTES = 16
#: Longest display name, in characters (Unicode scalar values).
MAX_NAME_CHARS = 64
#: Roles, weakest first.
ROLES = ("viewer", "commenter", "editor", "owner")

# SM2 recommended curve order n (GB/T 32918.5).
_SM2_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
# DER OIDs: id-ecPublicKey (1.2.840.10045.2.1) and the SM2 curve (1.2.156.10197.1.301).
_OID_EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")
_OID_SM2 = bytes.fromhex("2a811ccf5501822d")
_DOC_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_HAVE_HASHLIB_SM3 = "sm3" in hashlib.algorithms_available


class Sm2PublicKey:
    """An SM2 public key (verifies; the server holds it as sm2.pub.pem)."""

    __slots__ = ("point",)

    def __init__(self, point: bytes) -> None:
        if len(point) != 65 or point[0] != 4 or not gmalg.SM2().verify_pk(point):
            raise ValueError("SM2 public key: not a point on the SM2 curve")
        #: Uncompressed point ``04 ‖ x ‖ y`` (65 bytes).
        self.point = bytes(point)

    def __repr__(self) -> str:
        return f"Sm2PublicKey({self.point[:9].hex()}…)"


class Sm2PrivateKey:
    """An SM2 private key (signs ``SM2-SM3`` tokens). Its repr never shows the secret."""

    __slots__ = ("_d", "point")

    def __init__(self, d: bytes) -> None:
        if len(d) != 32 or not 1 <= int.from_bytes(d, "big") <= _SM2_N - 2:
            raise ValueError("SM2 private key: the private scalar is out of range")
        self._d = bytes(d)
        #: Uncompressed public point ``04 ‖ x ‖ y`` (65 bytes).
        self.point = gmalg.SM2().generate_pk(self._d)
        if len(self.point) != 65:
            raise ValueError("SM2 private key: unexpected public key encoding")

    def public_key(self) -> Sm2PublicKey:
        """The matching public key."""
        return Sm2PublicKey(self.point)

    def __repr__(self) -> str:
        return f"Sm2PrivateKey(public {self.point[:9].hex()}…)"


class HmacKey:
    """An HMAC-SM3 secret (signs ``HMAC-SM3`` tokens). Its repr never shows the secret."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, (bytes, bytearray)):
            raise TypeError("HMAC-SM3 secret: want bytes")
        if len(secret) < MIN_HMAC_KEY_BYTES:
            raise ValueError(f"HMAC-SM3 secret: must be at least {MIN_HMAC_KEY_BYTES} bytes")
        self._secret = bytes(secret)

    def __repr__(self) -> str:
        return "HmacKey(…)"


Key = Union[Sm2PrivateKey, HmacKey]

# ---- DER / PEM ------------------------------------------------------------------------------


def _der_at(buf: bytes, pos: int, end: int):
    """One DER element at ``pos``: (tag, content start, content end)."""
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag, length = buf[pos], buf[pos + 1]
    start = pos + 2
    if length & 0x80:
        n = length & 0x7F
        if not 1 <= n <= 2 or start + n > end:
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[start : start + n], "big")
        start += n
    if start + length > end:
        raise ValueError("truncated DER")
    return tag, start, start + length


def _der_children(buf: bytes, start: int, end: int):
    out = []
    while start < end:
        el = _der_at(buf, start, end)
        out.append(el)
        start = el[2]
    return out


def _pem_body(pem: Union[str, bytes], label: str) -> bytes:
    if isinstance(pem, (bytes, bytearray)):
        pem = bytes(pem).decode("utf-8")
    if not isinstance(pem, str):
        raise TypeError("PEM: want a string")
    blocks = re.findall(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", pem, re.S)
    for found_label, body in blocks:
        if found_label == label:
            b64 = re.sub(r"\s+", "", body)
            if not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", b64):
                raise ValueError("PEM: bad base64")
            return base64.b64decode(b64, validate=True)
    labels = ", ".join(b[0] for b in blocks) or "none"
    raise ValueError(f'PEM: no "{label}" block (found: {labels})')


def _check_sm2_algorithm(der: bytes, start: int, end: int) -> None:
    children = _der_children(der, start, end)
    if not children or children[0][0] != 0x06:
        raise ValueError("no algorithm OID")
    oid = der[children[0][1] : children[0][2]]
    if oid == _OID_SM2:
        return
    params = children[1] if len(children) > 1 else None
    if (
        oid != _OID_EC_PUBLIC_KEY
        or params is None
        or params[0] != 0x06
        or der[params[1] : params[2]] != _OID_SM2
    ):
        raise ValueError(
            "not an SM2 key (want id-ecPublicKey with the SM2 curve, 1.2.156.10197.1.301)"
        )


def _point_of_bit_string(der: bytes, el) -> bytes:
    tag, start, end = el
    if tag != 0x03 or end - start != 66 or der[start] != 0:
        raise ValueError("public key is not an uncompressed point")
    return der[start + 1 : end]


def sm2_private_key_from_pem(pem: Union[str, bytes]) -> Sm2PrivateKey:
    """The SM2 private key in a PKCS#8 PEM ("PRIVATE KEY", as `coedit keygen` writes sm2.pem).

    Checks the curve, the scalar's range, and that an embedded public key matches it.
    """
    try:
        der = _pem_body(pem, "PRIVATE KEY")
        tag, start, end = _der_at(der, 0, len(der))
        if tag != 0x30 or end != len(der):
            raise ValueError("not a DER SEQUENCE")
        fields = _der_children(der, start, end)
        if len(fields) < 3 or fields[0][0] != 0x02 or der[fields[0][1] : fields[0][2]] not in (
            b"\x00",
            b"\x01",
        ):
            raise ValueError("not PKCS#8 (version)")
        if fields[1][0] != 0x30:
            raise ValueError("not PKCS#8 (algorithm)")
        _check_sm2_algorithm(der, fields[1][1], fields[1][2])
        if fields[2][0] != 0x04:
            raise ValueError("not PKCS#8 (private key)")
        # RFC 5915 ECPrivateKey inside the OCTET STRING.
        etag, estart, eend = _der_at(der, fields[2][1], fields[2][2])
        if etag != 0x30:
            raise ValueError("ECPrivateKey is not a SEQUENCE")
        ec = _der_children(der, estart, eend)
        if len(ec) < 2 or ec[0][0] != 0x02 or der[ec[0][1] : ec[0][2]] != b"\x01":
            raise ValueError("ECPrivateKey version is not 1")
        if ec[1][0] != 0x04 or ec[1][2] - ec[1][1] != 32:
            raise ValueError("the private scalar is not 32 bytes")
        key = Sm2PrivateKey(der[ec[1][1] : ec[1][2]])
        for ftag, fstart, fend in ec[2:]:
            if ftag == 0xA0:
                otag, ostart, oend = _der_at(der, fstart, fend)
                if otag != 0x06 or der[ostart:oend] != _OID_SM2:
                    raise ValueError("curve is not SM2")
            elif ftag == 0xA1:
                embedded = _point_of_bit_string(der, _der_at(der, fstart, fend))
                if embedded != key.point:
                    raise ValueError("the embedded public key does not match the private key")
        return key
    except ValueError as e:
        msg = str(e)
        if not msg.startswith("SM2 private key:"):
            msg = f"SM2 private key: {msg}"
        raise ValueError(msg) from e


def sm2_public_key_from_pem(pem: Union[str, bytes]) -> Sm2PublicKey:
    """The SM2 public key in a SubjectPublicKeyInfo PEM ("PUBLIC KEY", as sm2.pub.pem)."""
    try:
        der = _pem_body(pem, "PUBLIC KEY")
        tag, start, end = _der_at(der, 0, len(der))
        if tag != 0x30 or end != len(der):
            raise ValueError("not a DER SEQUENCE")
        fields = _der_children(der, start, end)
        if len(fields) != 2 or fields[0][0] != 0x30:
            raise ValueError("not SubjectPublicKeyInfo")
        _check_sm2_algorithm(der, fields[0][1], fields[0][2])
        return Sm2PublicKey(_point_of_bit_string(der, fields[1]))
    except ValueError as e:
        raise ValueError(f"SM2 public key: {e}") from e


def hmac_key_from_text(text: Union[str, bytes]) -> HmacKey:
    """The HMAC-SM3 secret in the text of hmac.key: hex digits (surrounding whitespace ignored)."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    t = text.strip()
    if not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", t):
        raise ValueError("HMAC-SM3 key: not hex (hmac.key holds one line of hex digits)")
    return HmacKey(bytes.fromhex(t))


def hmac_key_from_bytes(secret: bytes) -> HmacKey:
    """An HMAC-SM3 secret from raw bytes."""
    return HmacKey(secret)


def _read_secret_file(path: Union[str, os.PathLike], check_mode: bool) -> str:
    mode = os.stat(path).st_mode
    if check_mode and mode & 0o077:
        raise ValueError(
            f"{os.fspath(path)}: mode {stat.S_IMODE(mode):o} lets others read the secret; "
            "run chmod 600"
        )
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_sm2_private_key_file(path, *, check_mode: bool = True) -> Sm2PrivateKey:
    """Loads sm2.pem (mode 0600 required unless ``check_mode=False``)."""
    try:
        return sm2_private_key_from_pem(_read_secret_file(path, check_mode))
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)}: {e}") from e


def load_sm2_public_key_file(path) -> Sm2PublicKey:
    """Loads sm2.pub.pem."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return sm2_public_key_from_pem(text)
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)}: {e}") from e


def load_hmac_key_file(path, *, check_mode: bool = True) -> HmacKey:
    """Loads hmac.key (mode 0600 required unless ``check_mode=False``)."""
    try:
        return hmac_key_from_text(_read_secret_file(path, check_mode))
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)}: {e}") from e


def load_key_file(path, *, check_mode: bool = True) -> Key:
    """Loads a signing key file of either kind: a PEM private key (SM2) or a hex secret (HMAC)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if "-----BEGIN PUBLIC KEY-----" in text:
        raise ValueError(
            f"{os.fspath(path)}: a public key cannot sign; use the private key (sm2.pem)"
        )
    if "-----BEGIN" in text:
        return load_sm2_private_key_file(path, check_mode=check_mode)
    return load_hmac_key_file(path, check_mode=check_mode)


# ---- signatures -----------------------------------------------------------------------------


def _bytes_of(message: Union[str, bytes]) -> bytes:
    return message.encode("utf-8") if isinstance(message, str) else bytes(message)


def sm2_sign(
    message: Union[str, bytes],
    key: Sm2PrivateKey,
    *,
    _rnd_fn: Optional[Callable[[int], int]] = None,
) -> bytes:
    """The SM2 signature ``r ‖ s`` (64 bytes) of ``message``, over SM3(Z_A ‖ message) with the
    distinguishing ID 1234567812345678. (``_rnd_fn`` fixes the nonce, for known-answer tests.)
    """
    if not isinstance(key, Sm2PrivateKey):
        raise TypeError("sm2_sign: want an Sm2PrivateKey")
    signer = gmalg.SM2(key._d, SM2_DIST_ID, key.point, rnd_fn=_rnd_fn)
    r, s = signer.sign(_bytes_of(message))
    if len(r) > 32 or len(s) > 32:
        raise ValueError("SM2 signature component longer than 32 bytes")
    return r.rjust(32, b"\x00") + s.rjust(32, b"\x00")


def sm2_verify(
    message: Union[str, bytes], signature: bytes, key: Union[Sm2PublicKey, Sm2PrivateKey]
) -> bool:
    """Checks an SM2 signature ``r ‖ s`` of ``message`` (distinguishing ID 1234567812345678)."""
    pub = key.public_key() if isinstance(key, Sm2PrivateKey) else key
    if not isinstance(pub, Sm2PublicKey):
        raise TypeError("sm2_verify: want an SM2 key")
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != 64:
        return False
    r, s = bytes(signature[:32]), bytes(signature[32:])
    if not (1 <= int.from_bytes(r, "big") < _SM2_N and 1 <= int.from_bytes(s, "big") < _SM2_N):
        return False
    return gmalg.SM2(uid=SM2_DIST_ID, pk=pub.point).verify(_bytes_of(message), r, s)


class _GmalgSm3:
    """hashlib-style SM3 over gmalg, for ``hmac`` where hashlib has no SM3."""

    name = "sm3"
    digest_size = 32
    block_size = 64

    def __init__(self, data: bytes = b"") -> None:
        self._data = bytearray(data)

    def update(self, data: bytes) -> None:
        self._data.extend(data)

    def copy(self) -> "_GmalgSm3":
        return _GmalgSm3(bytes(self._data))

    def digest(self) -> bytes:
        h = gmalg.SM3()
        h.update(bytes(self._data))
        return h.value()

    def hexdigest(self) -> str:
        return self.digest().hex()


def hmac_sm3(key: Union[HmacKey, bytes], message: Union[str, bytes]) -> bytes:
    """HMAC-SM3 (32 bytes): hashlib's SM3 (OpenSSL) when available, else gmalg's."""
    secret = key._secret if isinstance(key, HmacKey) else bytes(key)
    digestmod = "sm3" if _HAVE_HASHLIB_SM3 else _GmalgSm3
    return hmac.new(secret, _bytes_of(message), digestmod).digest()


# ---- tokens ---------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _is_uint(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_doc_id(what: str, value) -> None:
    if not isinstance(value, str) or not _DOC_ID.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"{what} {value!r}: want 1 to 128 characters of [A-Za-z0-9._~-]")


def _normalize_grants(grants) -> dict:
    if grants is None:
        return {}
    if not isinstance(grants, Mapping):
        raise TypeError("grants: want a mapping of pattern → role")
    if len(grants) > MAX_GRANTS:
        raise ValueError(f"grants: more than {MAX_GRANTS}")
    out = {}
    for pattern, role in grants.items():
        if not isinstance(pattern, str):
            raise TypeError("grants: patterns are strings")
        name = pattern[:-1] if pattern.endswith("*") else pattern
        if name:
            _check_doc_id("grant pattern", name)
        if role not in ROLES:
            raise ValueError(
                f"grant {pattern!r}: role {role!r} is not one of {', '.join(ROLES)}"
            )
        out[pattern] = role
    return out


# The presence claims follow the server's rules for them (a token breaking them is refused
# whole, 5002): a name of 1 to 64 characters without control characters, a colour `#rrggbb`.
def _check_name(name) -> None:
    if name is None:
        return
    if not isinstance(name, str) or not name:
        raise TypeError("name: want a non-empty string")
    if len(name) > MAX_NAME_CHARS or any(unicodedata.category(ch) == "Cc" for ch in name):
        raise ValueError(f"name: at most {MAX_NAME_CHARS} characters without control characters")


def _check_color(color) -> None:
    if color is None:
        return
    if not isinstance(color, str) or not re.fullmatch(r"#[0-9A-Fa-f]{6}", color):
        raise ValueError(f"color {color!r}: want #rrggbb")


def issue_token(
    *,
    alg: str,
    key: Key,
    sub: str,
    tenant: str,
    ttl_seconds: int,
    grants: Optional[Mapping[str, str]] = None,
    admin: bool = False,
    nbf: Optional[int] = None,
    name: Optional[str] = None,
    color: Optional[str] = None,
    now: Optional[int] = None,
) -> str:
    """A coedit access token: ``base64url(header).base64url(claims).base64url(signature)``.

    ``alg`` ("SM2-SM3" or "HMAC-SM3") must match ``key`` (from the load/parse helpers) and the
    server's ``[auth] mode``. ``grants`` maps a document id or ``prefix*`` to a role. ``nbf``
    is a Unix time. ``name`` (display name shown with the user's caret, 1 to 64 characters)
    and ``color`` (``#rrggbb``) are optional presence claims. ``now`` overrides the issue time
    (Unix seconds).
    """
    if alg == ALG_SM2:
        if not isinstance(key, Sm2PrivateKey):
            raise TypeError(f"alg {ALG_SM2} needs an SM2 private key")
    elif alg == ALG_HMAC:
        if not isinstance(key, HmacKey):
            raise TypeError(f"alg {ALG_HMAC} needs an HMAC-SM3 key")
    else:
        raise ValueError(f"alg {alg!r}: want {ALG_SM2} or {ALG_HMAC}")
    if not isinstance(sub, str) or not sub:
        raise TypeError("sub: want a non-empty string")
    _check_doc_id("tenant", tenant)
    if not _is_uint(ttl_seconds) or not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(
            f"ttl_seconds {ttl_seconds!r}: want an integer from 1 to {MAX_TTL_SECONDS}"
        )
    if not isinstance(admin, bool):
        raise TypeError("admin: want a bool")
    iat = int(time.time()) if now is None else now
    if not _is_uint(iat):
        raise TypeError("now: want Unix seconds")
    exp = iat + ttl_seconds
    if nbf is not None and (not _is_uint(nbf) or nbf > exp):
        raise ValueError("nbf: want Unix seconds no later than the expiry")
    _check_name(name)
    _check_color(color)

    # Field order as the server writes them; absent optional claims are left out.
    claims = {"sub": sub, "tenant": tenant, "iat": iat, "exp": exp}
    if nbf is not None:
        claims["nbf"] = nbf
    claims["grants"] = _normalize_grants(grants)
    if admin:
        claims["admin"] = True
    if name is not None:
        claims["name"] = name
    if color is not None:
        claims["color"] = color

    header = {"alg": alg, "typ": TOKEN_TYPE}
    signing_input = f"{_b64url(_json(header))}.{_b64url(_json(claims))}"
    sig = sm2_sign(signing_input, key) if alg == ALG_SM2 else hmac_sm3(key, signing_input)
    token = f"{signing_input}.{_b64url(sig)}"
    if len(token) > MAX_TOKEN_BYTES:
        raise ValueError(
            f"the token is {len(token)} bytes; the server accepts at most {MAX_TOKEN_BYTES}"
        )
    return token


def decode_token(token: str) -> dict:
    """The header and claims of a token, decoded but NOT verified (for logs and tests)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not three dot-separated parts")

    def unb64(p: str) -> bytes:
        return base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))

    return {
        "header": json.loads(unb64(parts[0])),
        "claims": json.loads(unb64(parts[1])),
        "signature": unb64(parts[2]),
    }
